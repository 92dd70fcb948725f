"""Where the Shopify access token comes from: a static admin token or the client-credentials grant.

Neither the client secret nor any access token ever appears in a log line, an exception message
or a repr: errors name the shop and the HTTP status, nothing more.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Mapping
from typing import Protocol

import aiohttp
import structlog

from daemon.secrets import Secret
from daemon.shopify.errors import ShopifyAuthError, ShopifyError, ShopifyUnavailable

log = structlog.get_logger(__name__)

# Renew a client-credentials token once less than this share of its lifetime is left...
RENEW_FRACTION = 0.1
# ...or less than this many seconds, whichever comes first for long-lived tokens.
RENEW_MARGIN_SECONDS = 3600.0
# An OAuth error code is a short identifier; anything else in the body is not repeated.
_OAUTH_ERROR_CODE = re.compile(r"[a-z_]{1,64}")


class TokenProvider(Protocol):
    """Gives the current Shopify access token; told when Shopify refused it."""

    async def token(self) -> Secret:
        """The access token to send now."""
        ...

    def invalidate(self) -> None:
        """Forget the current token: Shopify answered 401 with it."""
        ...


class StaticToken:
    """An admin API token (`shpat_…`) of a custom app: it never changes."""

    __slots__ = ("_token",)

    def __init__(self, token: Secret) -> None:
        self._token = token

    async def token(self) -> Secret:
        """The configured token."""
        return self._token

    def invalidate(self) -> None:
        """Nothing to renew: the same token is all there is, so a 401 stays a 401."""

    def __repr__(self) -> str:
        return "StaticToken(Secret('***'))"


class ClientCredentialsToken:
    """Tokens from the client-credentials grant (apps created since 2026-01), renewed early.

    Tokens live about 24 h and come without a refresh token: a new one is requested before the
    old one expires, by one caller at a time while the others wait for its result.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        shop_admin_url: str,
        client_id: str,
        client_secret: Secret,
        clock: Callable[[], float] = time.time,
        *,
        timeout: float = 30.0,
    ) -> None:
        self._session = session
        self._url = f"{shop_admin_url.rstrip('/')}/admin/oauth/access_token"
        self._client_id = client_id
        self._client_secret = client_secret
        self._clock = clock
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._token: Secret | None = None
        self._renew_at = 0.0
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"ClientCredentialsToken(url={self._url!r}, client_id={self._client_id!r})"

    async def token(self) -> Secret:
        """The current token, requesting a new one when it is missing or close to expiry."""
        current = self._fresh()
        if current is not None:
            return current
        async with self._lock:
            # Whoever held the lock before may have just renewed it: share that result.
            current = self._fresh()
            if current is not None:
                return current
            self._token, self._renew_at = await self._request()
            return self._token

    def invalidate(self) -> None:
        """Drop the current token so the next `token()` requests a new one."""
        self._token = None

    def _fresh(self) -> Secret | None:
        if self._token is not None and self._clock() < self._renew_at:
            return self._token
        return None

    async def _request(self) -> tuple[Secret, float]:
        form = {
            "grant_type": "client_credentials",
            "client_id": self._client_id,
            "client_secret": self._client_secret.reveal(),
        }
        requested_at = self._clock()
        try:
            async with self._session.post(
                self._url,
                data=form,
                headers={"Accept": "application/json"},
                timeout=self._timeout,
            ) as response:
                status = response.status
                body = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ShopifyUnavailable(
                f"Shopify token endpoint {self._url} unreachable ({type(exc).__name__})"
            ) from None
        if status >= 500 or status == 429:
            raise ShopifyUnavailable(f"Shopify token endpoint {self._url} answered HTTP {status}")
        reply = _json_object(body)
        if status != 200:
            code = reply.get("error") if reply is not None else None
            detail = (
                f" ({code})" if isinstance(code, str) and _OAUTH_ERROR_CODE.fullmatch(code) else ""
            )
            raise ShopifyAuthError(
                f"Shopify refused the client credentials at {self._url}: HTTP {status}{detail}"
            )
        token, lifetime = _parse_grant(reply, self._url)
        log.info(
            "shopify_token_obtained",
            url=self._url,
            scope=reply.get("scope") if reply is not None else None,
            expires_in=lifetime,
        )
        margin = min(lifetime * RENEW_FRACTION, RENEW_MARGIN_SECONDS)
        return token, requested_at + lifetime - margin


def _json_object(body: bytes) -> dict[str, object] | None:
    try:
        value = json.loads(body)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _parse_grant(reply: Mapping[str, object] | None, url: str) -> tuple[Secret, float]:
    if reply is None:
        raise ShopifyError(f"Shopify token endpoint {url} did not answer with a JSON object")
    access_token = reply.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise ShopifyError(f"Shopify token endpoint {url} answered without an access_token")
    expires_in = reply.get("expires_in")
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float) or expires_in <= 0:
        raise ShopifyError(f"Shopify token endpoint {url} answered without a positive expires_in")
    return Secret(access_token), float(expires_in)
