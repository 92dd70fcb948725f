"""Shopify bulk operations, the parts that need no I/O: operation status and the JSONL result.

A bulk query runs on Shopify's side, free of query cost, and leaves its whole result in a JSONL
file at a signed storage URL: one JSON object per line, one line per connection node, the
nodes of a nested connection on lines of their own that name their parent in `__parentId`.
The client (client.py) starts the operation, polls it with these rules, and feeds the
downloaded bytes through `JsonlLines`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

# Polling: the first wait, and the longest; each wait doubles up to the longest.
POLL_FIRST_WAIT = 0.5
POLL_MAX_WAIT = 5.0
# How long one bulk read (waiting for a free slot, running, downloading) may take in all.
DEFAULT_TIMEOUT = 30 * 60.0

COMPLETED = "COMPLETED"
# Statuses that end an operation without a result. CANCELING is on its way to CANCELED.
FAILED = frozenset({"FAILED", "CANCELED", "CANCELING", "EXPIRED"})
# userError codes saying the shop already runs as many bulk queries as this app may: ours from
# an earlier run or another process. Both clear up when those finish.
BUSY_CODES = frozenset({"OPERATION_IN_PROGRESS", "LIMIT_REACHED"})

PARENT_KEY = "__parentId"


@dataclass(frozen=True, slots=True)
class BulkOperation:
    """What polling reports about one bulk operation."""

    id: str
    status: str
    error_code: str | None = None
    url: str | None = None  # a signed capability URL: never logged
    object_count: int | None = None

    @property
    def failed(self) -> bool:
        """Whether the operation ended without a result."""
        return self.status in FAILED

    def __repr__(self) -> str:
        # The result URL grants access to shop data for days: keep it out of reprs and logs.
        return (
            f"BulkOperation(id={self.id!r}, status={self.status!r}, "
            f"error_code={self.error_code!r}, object_count={self.object_count!r})"
        )


def parse_operation(value: object) -> BulkOperation | None:
    """A BulkOperation object from a GraphQL answer; None when it is missing or malformed."""
    if not isinstance(value, dict):
        return None
    op_id, status = value.get("id"), value.get("status")
    if not isinstance(op_id, str) or not isinstance(status, str):
        return None
    error_code, url = value.get("errorCode"), value.get("url")
    return BulkOperation(
        id=op_id,
        status=status,
        error_code=error_code if isinstance(error_code, str) else None,
        url=url if isinstance(url, str) and url else None,
        object_count=_unsigned(value.get("objectCount")),
    )


def _unsigned(value: object) -> int | None:
    # UnsignedInt64 travels as a string of digits; accept a plain number too.
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def next_poll_wait(previous: float | None) -> float:
    """The wait before the next status poll: 0.5 s first, then doubling up to 5 s."""
    if previous is None:
        return POLL_FIRST_WAIT
    return min(POLL_MAX_WAIT, previous * 2)


class JsonlLines:
    """Splits a JSONL download, arriving in arbitrary chunks, into its lines."""

    def __init__(self) -> None:
        self._partial = bytearray()
        self.count = 0  # lines handed out so far (blank ones included), for log messages

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        """The complete lines `chunk` finishes; the unfinished tail is kept for the next one."""
        self._partial += chunk
        *complete, rest = self._partial.split(b"\n")
        self._partial = rest
        for line in complete:
            self.count += 1
            yield bytes(line)

    def finish(self) -> Iterator[bytes]:
        """The last line, when the file does not end with a newline."""
        if self._partial.strip():
            self.count += 1
            yield bytes(self._partial)
        self._partial = bytearray()


def decode_line(line: bytes) -> dict[str, Any] | None:
    """One JSONL line as a JSON object; None when it is not one."""
    try:
        value = json.loads(line)
    except ValueError:  # UnicodeDecodeError included
        return None
    return value if isinstance(value, dict) else None
