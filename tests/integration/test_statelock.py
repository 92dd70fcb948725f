"""The state file's writer lock (daemon/statelock.py) on a real file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from daemon.statelock import StateLock, StateLocked, lock_path
from daemon.store import StateError


def test_a_second_writer_is_refused_with_the_file_and_the_holders_pid(tmp_path: Path) -> None:
    state = tmp_path / "state" / "state.db"
    with StateLock.acquire(state):
        with pytest.raises(StateLocked) as refused:
            StateLock.acquire(state)
        assert str(state) in str(refused.value)
        assert f"pid {os.getpid()}" in str(refused.value)
        assert isinstance(refused.value, StateError)  # exit 1, like any unusable state


def test_the_lock_is_free_again_once_released(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    StateLock.acquire(state).release()
    StateLock.acquire(state).release()


def test_the_lock_file_and_a_new_state_folder_are_private(tmp_path: Path) -> None:
    state = tmp_path / "new" / "state.db"
    previous = os.umask(0o022)
    try:
        with StateLock.acquire(state):
            pass
    finally:
        os.umask(previous)
    assert stat.S_IMODE(state.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(lock_path(state).stat().st_mode) == 0o600
    assert not state.exists()  # the lock never creates the state file itself
