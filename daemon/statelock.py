"""One writer per state file (PRODUCT.md §3): an exclusive lock its writer holds for its life.

Two daemons on one state file would both poll and both push, and a `sync-once` beside a running
daemon would race it for the same levels. `stocksync run`, `sync-once` and `reconcile` (not a
dry run) therefore take an exclusive `flock` on `<state file>.lock` before opening the state, and
hold it until the process ends; a second writer is refused with the file and the holder's pid.

Not locked, on purpose: `plan`, `mappings`, `history` and `reconcile --dry-run` only read (from a
copy or read-only), and `release-hold` deletes one row of the holds table in one SQLite
transaction, which the running daemon reads at every cycle: releasing a hold while the daemon
runs is what that command is for.

The lock is the kernel's (`flock`): it ends with its process, whatever kills it, so it is never
stale. The lock file is left in place (unlinking it would let a waiting process lock a file
nobody else can find); the pid written in it is only for the message.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path
from types import TracebackType

from daemon.store import StateError


class StateLocked(StateError):
    """Another process holds the state file's writer lock."""


def lock_path(state_path: Path) -> Path:
    """The lock file of a state file: `<state file>.lock` beside it."""
    return state_path.with_name(state_path.name + ".lock")


class StateLock:
    """The writer lock of one state file, held from `acquire` until `release` (or exit)."""

    def __init__(self, state_path: Path, fd: int) -> None:
        self.state_path = state_path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, state_path: Path) -> StateLock:
        """Take the lock now; StateLocked (naming the holder's pid) if another process has it."""
        path = lock_path(state_path)
        _make_folder(path.parent)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StateError(f"cannot open the lock file {path}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise StateError(f"cannot lock {path}: {exc.strerror}") from exc
            who = f"pid {holder}" if holder is not None else "a process that is just starting"
            raise StateLocked(
                f"{state_path} is in use by another stocksync process ({who}, holding {path}); "
                "one process writes a state file: stop that one first, or give this "
                "configuration its own daemon.state_path"
            ) from None
        # Ours now: say who holds it, for the message a second writer shows.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(state_path, fd)

    def release(self) -> None:
        """Let another writer in (closing the descriptor drops the lock); idempotent."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> StateLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


def _make_folder(folder: Path) -> None:
    """Create the state folder (0700) as StateStore.open would, so the lock can come first."""
    try:
        folder.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        return
    except OSError as exc:
        raise StateError(f"cannot create the state folder {folder}: {exc.strerror}") from exc
    folder.chmod(0o700)  # mkdir's mode is filtered by the umask


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
