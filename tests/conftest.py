"""Fixtures shared by every test folder: HTTP sessions, aioresponses, fake time."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from aioresponses import aioresponses

from tests.helpers import FakeTime


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session, closed after the test."""
    async with aiohttp.ClientSession() as client_session:
        yield client_session


@pytest.fixture
def mocked() -> Iterator[aioresponses]:
    """Every aiohttp request of the test answered by aioresponses."""
    with aioresponses() as mock:
        yield mock


@pytest.fixture
def fake_time() -> FakeTime:
    """A clock that moves only when the code under test sleeps."""
    return FakeTime()
