"""The process-wide memory settings every stocksync process applies at start-up."""

from __future__ import annotations

import gc
import platform
from collections.abc import Iterator

import pytest

from daemon.memory import GC_THRESHOLDS, MALLOPT_SETTINGS, tune_allocator, tune_garbage_collector

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc malloc only")


@pytest.fixture
def thresholds() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


@pytest.mark.usefixtures("thresholds")
def test_the_collector_collects_less_often_than_cpythons_default() -> None:
    tune_garbage_collector()

    assert gc.get_threshold() == GC_THRESHOLDS


@glibc_only
def test_every_malloc_setting_is_applied_under_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, _, _ in MALLOPT_SETTINGS:
        monkeypatch.delenv(name, raising=False)

    assert tune_allocator() == [name for name, _, _ in MALLOPT_SETTINGS]


@glibc_only
def test_an_operators_malloc_environment_variable_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, _, _ in MALLOPT_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")

    assert "MALLOC_ARENA_MAX" not in tune_allocator()
