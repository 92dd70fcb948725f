"""Failures injected into the simulated Shopify's next requests (tests, demo, benchmarks)."""

from __future__ import annotations

import collections


class ShopifyFaults:
    """Failures injected into the next GraphQL requests (tests, demo, benchmarks)."""

    def __init__(self) -> None:
        # While set, every request (GraphQL and OAuth) answers 503.
        self.outage = False
        # Live stores have been seen to re-execute a retried key instead of replaying it.
        self.reexecute_idempotent_retries = False
        # Answer CHANGE_FROM_QUANTITY_STALE with `field: null`, as some live stores reportedly do.
        self.stale_without_field = False
        self._throttle = 0
        self._http429 = 0
        self._holds: collections.deque[tuple[float | None, bool]] = collections.deque()
        self._failures: collections.deque[int] = collections.deque()
        self._bulk_failures: collections.deque[str] = collections.deque()
        self._download_failures: collections.deque[int] = collections.deque()

    def throttle_next(self, n: int) -> None:
        """Answer the next `n` GraphQL requests THROTTLED at HTTP 200, whatever the bucket holds."""
        self._throttle += n

    def http429_next(self, n: int) -> None:
        """Answer the next `n` GraphQL requests with HTTP 429 and a Retry-After header."""
        self._http429 += n

    def fail_next(self, n: int, status: int = 500) -> None:
        """Answer the next `n` GraphQL requests with HTTP `status` (a server error)."""
        self._failures.extend([status] * n)

    def hold_next_set(self, n: int, seconds: float | None = None, *, dedup: bool = False) -> None:
        """Hold the next `n` inventorySetQuantities requests for `seconds` (None: until
        `ShopifySim.release_held()`), then apply them, whether or not their sender is still
        waiting (it may have timed out, or died).

        With `dedup` false the held request is applied as received even if its key was used
        again meanwhile: Shopify's idempotency has been reported unreliable, and a late request
        overtaking newer ones is the failure this models.
        """
        self._holds.extend([(seconds, dedup)] * n)

    def _take_hold(self) -> tuple[float | None, bool] | None:
        return self._holds.popleft() if self._holds else None

    def bulk_fail_next(self, n: int = 1, error_code: str = "INTERNAL_SERVER_ERROR") -> None:
        """End the next `n` bulk operations started FAILED with `error_code` and no data."""
        self._bulk_failures.extend([error_code] * n)

    def bulk_download_fail_next(self, n: int = 1, status: int = 503) -> None:
        """Answer the next `n` downloads of a bulk result with HTTP `status`."""
        self._download_failures.extend([status] * n)

    def _take_failure(self) -> int | None:
        return self._failures.popleft() if self._failures else None

    def _take_bulk_failure(self) -> str | None:
        return self._bulk_failures.popleft() if self._bulk_failures else None

    def _take_download_failure(self) -> int | None:
        return self._download_failures.popleft() if self._download_failures else None

    def _take_http429(self) -> bool:
        if self._http429 <= 0:
            return False
        self._http429 -= 1
        return True

    def _take_throttle(self) -> bool:
        if self._throttle <= 0:
            return False
        self._throttle -= 1
        return True
