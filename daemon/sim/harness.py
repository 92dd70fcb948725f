"""Serve the simulators on loopback HTTP for the demo, the end-to-end tests and the benchmarks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from aiohttp import web

from daemon.sim.katana import KatanaSim
from daemon.sim.shopify import ShopifySim

# Bounds how long cleanup waits for a request still being served (the daemon may be mid-poll).
SHUTDOWN_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class SimulatorUrls:
    """Where the simulators listen."""

    katana: str  # the Katana base URL, ending in /v1
    shopify: tuple[str, ...]  # one admin URL per shop (GraphQL under /admin/api/{version}/)


@asynccontextmanager
async def run_simulators(
    katana: KatanaSim,
    shopify: ShopifySim | Sequence[ShopifySim],
    *,
    host: str = "127.0.0.1",
    katana_port: int = 0,
    shopify_ports: Sequence[int] | None = None,
) -> AsyncIterator[SimulatorUrls]:
    """Serve Katana and every shop until the block exits (port 0 = one the OS picks)."""
    shops = [shopify] if isinstance(shopify, ShopifySim) else list(shopify)
    ports = list(shopify_ports) if shopify_ports is not None else [0] * len(shops)
    if len(ports) != len(shops):
        raise ValueError(f"need {len(shops)} Shopify ports, got {len(ports)}")
    async with AsyncExitStack() as stack:
        # Webhook deliveries under way end before the servers do.
        stack.push_async_callback(katana.webhooks.close)
        bound = await _serve(stack, katana.app(), host, katana_port)
        shop_ports = [
            await _serve(stack, s.app(), host, p) for s, p in zip(shops, ports, strict=True)
        ]
        yield SimulatorUrls(
            katana=f"{_origin(host, bound)}/v1",
            shopify=tuple(_origin(host, p) for p in shop_ports),
        )


async def _serve(stack: AsyncExitStack, app: web.Application, host: str, port: int) -> int:
    """Start `app` on host:port, register its cleanup, and return the port actually bound."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    await web.TCPSite(runner, host, port).start()
    return int(runner.addresses[0][1])


def _origin(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
