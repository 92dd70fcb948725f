"""The Shopify client's errors, apart so that the token providers need not import the client."""

from __future__ import annotations


class ShopifyError(Exception):
    """Shopify answered with an error that retrying the same request will not fix."""


class ShopifyAuthError(ShopifyError):
    """Shopify refused the credentials (HTTP 401/403, or the token grant failed)."""


class ShopifyUnavailable(ShopifyError):
    """Shopify could not be reached, or kept failing, within the bounded retries."""
