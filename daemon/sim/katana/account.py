"""`KatanaSim`: one simulated Katana account, put together from its parts.

The business model reads as Katana's areas (`catalogue`, `stock`, `manufacturing`, `sales`,
`purchasing`), each a part of this class over the shared state (`state`); `app()` serves the
account through the REST API (`api`). See README.md beside the package for the whole model.
"""

from __future__ import annotations

from aiohttp import web

from daemon.sim.katana.api import _KatanaApi
from daemon.sim.katana.catalogue import _Catalogue
from daemon.sim.katana.purchasing import _Purchasing
from daemon.sim.katana.sales import _Sales


class KatanaSim(_Sales, _Purchasing, _Catalogue):
    """One Katana account: catalogue, stock, orders, and the REST API that serves them."""

    def app(self) -> web.Application:
        """The REST API (mounted under /v1) serving this account."""
        return _KatanaApi(self).application()
