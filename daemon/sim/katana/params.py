"""A list request's query string, read as Katana's validator reads it.

A bad value (a non-integer id, ``limit=0``, a non-ISO date, a non-boolean flag) raises
`_Invalid`, which the API answers 422 ``VALIDATION_FAILED`` with Katana's details. Unknown
parameter names are not checked here: Katana ignores them.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from aiohttp import web

from daemon.sim.katana.records import Json, _ListQuery

DEFAULT_LIMIT = 50
MAX_LIMIT = 250
_INTEGER = re.compile(r"-?\d+")


class _Invalid(Exception):
    """A bad query parameter value: Katana answers 422 VALIDATION_FAILED."""

    def __init__(self, name: str, code: str, message: str, info: Json) -> None:
        super().__init__(message)
        self.detail: Json = {"path": f".{name}", "code": code, "message": message, "info": info}


class _Params:
    """Typed access to a request's query string, raising _Invalid like Katana's validator."""

    def __init__(self, request: web.Request) -> None:
        self._query = request.query

    def has(self, name: str) -> bool:
        return name in self._query

    def text(self, name: str) -> str | None:
        return self._query.get(name)

    def texts(self, name: str) -> list[str]:
        return list(self._query.getall(name, []))

    def integer(self, name: str, *, minimum: int | None = None) -> int | None:
        raw = self._query.get(name)
        if raw is None:
            return None
        value = self._parse_int(name, raw)
        if minimum is not None and value < minimum:
            raise _Invalid(name, "minimum", f"should be >= {minimum}", {"limit": minimum})
        return value

    def integers(self, name: str) -> tuple[int, ...] | None:
        """An array: repeated keys (`a=1&a=2`) and comma lists (`a=1,2`) both work."""
        raw = self._query.getall(name, [])
        if not raw:
            return None
        parts = [p.strip() for value in raw for p in value.split(",") if p.strip()]
        return tuple(dict.fromkeys(self._parse_int(name, p) for p in parts))

    def boolean(self, name: str, default: bool = False) -> bool:
        raw = self._query.get(name)
        if raw is None:
            return default
        if raw.lower() in ("true", "1"):
            return True
        if raw.lower() in ("false", "0"):
            return False
        raise _Invalid(name, "type", "should be boolean", {"type": "boolean"})

    def timestamp(self, name: str) -> datetime | None:
        raw = self._query.get(name)
        if raw is None:
            return None
        try:
            value = datetime.fromisoformat(raw)
        except ValueError:
            raise _Invalid(
                name, "format", 'should match format "date-time"', {"format": "date-time"}
            ) from None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value

    @staticmethod
    def _parse_int(name: str, raw: str) -> int:
        if not _INTEGER.fullmatch(raw.strip()):
            raise _Invalid(name, "type", "should be integer", {"type": "integer"})
        return int(raw)

    def list_query(self, *, with_ids: bool = True) -> _ListQuery:
        limit = self.integer("limit", minimum=1)
        page = self.integer("page", minimum=1)
        return _ListQuery(
            ids=self.integers("ids") if with_ids else None,
            created_min=self.timestamp("created_at_min"),
            created_max=self.timestamp("created_at_max"),
            updated_min=self.timestamp("updated_at_min"),
            updated_max=self.timestamp("updated_at_max"),
            include_deleted=self.boolean("include_deleted"),
            # Katana cuts an oversized limit to the maximum without complaining.
            limit=min(limit or DEFAULT_LIMIT, MAX_LIMIT),
            page=page or 1,
        )
