"""`GET /`, `/status` and `/status.json`: the status page's HTTP face (read-only).

They serve SKUs and quantities, so the listener stays on loopback by default; with
`[daemon] status_token_env` / `status_token_file` set, every request must carry the token,
as `Authorization: Bearer TOKEN` (tooling) or HTTP Basic with the token as the password (a
browser asks for it once and sends it with the page's own refreshes).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import secrets
from collections.abc import Callable

from aiohttp import web

from daemon.secrets import Secret
from daemon.status.data import jsonable
from daemon.status.model import (
    DEFAULT_ROWS_PER_GROUP,
    MAX_ROWS_PER_GROUP,
    StatusModel,
)
from daemon.status.page import render_main, render_page

REALM = "stocksync status"
# Longer than any SKU; a longer query is a mistake or an attack, not a search.
MAX_QUERY_LENGTH = 200
_COMMON_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def presented_token(header: str) -> str | None:
    """The token an Authorization header carries (Bearer, or Basic's password), if any."""
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return value or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        _, colon, password = decoded.partition(":")
        return password if colon else None
    return None


def authorized(request: web.Request, token: Secret | None) -> bool:
    """True when no token is configured, or the request presents it (constant-time compare)."""
    if token is None:
        return True
    presented = presented_token(request.headers.get("Authorization", ""))
    if presented is None:
        return False
    return hmac.compare_digest(presented.encode("utf-8"), token.reveal().encode("utf-8"))


def _challenge() -> web.Response:
    response = web.Response(status=401, text="401: this status page needs its token\n")
    # Basic makes a browser ask for the token; Bearer tells tooling what else is accepted.
    response.headers.add("WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"')
    response.headers.add("WWW-Authenticate", f'Bearer realm="{REALM}"')
    response.headers.update(_COMMON_HEADERS)
    return response


def _text_param(request: web.Request, name: str) -> str:
    value = request.query.get(name, "")
    if len(value) > MAX_QUERY_LENGTH:
        raise web.HTTPBadRequest(text=f"{name} is longer than {MAX_QUERY_LENGTH} characters\n")
    return value


def _limit(request: web.Request) -> int:
    text = request.query.get("limit")
    if text is None:
        return DEFAULT_ROWS_PER_GROUP
    if not text.isdigit() or not 1 <= int(text) <= MAX_ROWS_PER_GROUP:
        raise web.HTTPBadRequest(text=f"limit must be a whole number 1-{MAX_ROWS_PER_GROUP}\n")
    return int(text)


class StatusRoutes:
    """The status page's handlers over one StatusModel; `token()` is read on every request
    so a reload that sets, changes or removes it applies at once."""

    def __init__(self, model: StatusModel, token: Callable[[], Secret | None]) -> None:
        self.model = model
        self.token = token

    def add_to(self, app: web.Application) -> None:
        """Register GET / , /status and /status.json (HEAD too)."""
        app.router.add_get("/", self.page)
        app.router.add_get("/status", self.page)
        app.router.add_get("/status.json", self.json)

    async def page(self, request: web.Request) -> web.StreamResponse:
        """The HTML page, or with `?fragment=main` only its refreshable part."""
        if not authorized(request, self.token()):
            return _challenge()
        status = await self.model.gather(
            query=_text_param(request, "q"),
            sku=_text_param(request, "sku") or None,
            rows_per_group=_limit(request),
        )
        if request.query.get("fragment") == "main":
            response = web.Response(text=render_main(status), content_type="text/html")
            response.headers.update(_COMMON_HEADERS)
            response.headers["Content-Security-Policy"] = "default-src 'none'"
            return response
        nonce = secrets.token_urlsafe(16)
        response = web.Response(text=render_page(status, nonce=nonce), content_type="text/html")
        response.headers.update(_COMMON_HEADERS)
        # Nothing but this document's own style and script: no CDN, no third party.
        response.headers["Content-Security-Policy"] = (
            f"default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; "
            "connect-src 'self'; img-src 'self' data:; form-action 'self'; "
            "base-uri 'none'; frame-ancestors 'none'"
        )
        return response

    async def json(self, request: web.Request) -> web.StreamResponse:
        """The same data as JSON (documented in docs/operations.md)."""
        if not authorized(request, self.token()):
            return _challenge()
        status = await self.model.gather(
            query=_text_param(request, "q"),
            sku=_text_param(request, "sku") or None,
            rows_per_group=_limit(request),
        )
        response = web.Response(
            text=json.dumps(jsonable(status), ensure_ascii=False, indent=1),
            content_type="application/json",
        )
        response.headers.update(_COMMON_HEADERS)
        response.headers["Content-Security-Policy"] = "default-src 'none'"
        return response
