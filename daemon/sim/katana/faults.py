"""Failures injected into the simulated Katana's HTTP API (the business state is unaffected)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal


@dataclass
class KatanaFaults:
    """Failures to inject into the HTTP API (the business state is unaffected)."""

    latency: float = 0.0  # seconds slept before every request is handled
    outage: bool = False  # every request answers 503 until cleared
    _fail: int = 0
    _fail_status: int = 500
    _throttle: int = 0
    _throttle_retry_after: int = 1
    _malformed: int = 0
    _malformed_kind: str = "quantity"
    _hold_back: timedelta = timedelta(0)

    def fail_next(self, n: int, status: int = 500) -> None:
        """The next `n` requests answer `status` with Katana's error body."""
        self._fail, self._fail_status = n, status

    def throttle_next(self, n: int, retry_after: int = 1) -> None:
        """The next `n` requests answer 429 with `Retry-After: retry_after` (a burst)."""
        self._throttle, self._throttle_retry_after = n, retry_after

    def malformed_next(self, n: int, kind: Literal["quantity", "missing_id"] = "quantity") -> None:
        """The next `n` /inventory rows served are broken: `quantity_in_stock: "abc"` or no id."""
        self._malformed, self._malformed_kind = n, kind

    def hold_back(self, window: timedelta) -> None:
        """Lists leave out rows changed within the last `window` of the account's clock, as if
        their transactions had not committed yet (a late commit); timedelta(0) ends it."""
        self._hold_back = window

    def clear(self) -> None:
        """Back to a healthy API."""
        self.latency, self.outage = 0.0, False
        self._fail = self._throttle = self._malformed = 0
        self._hold_back = timedelta(0)
