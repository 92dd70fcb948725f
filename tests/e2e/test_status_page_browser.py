"""The status page in a real Chromium, served by the real daemon running on the simulators.

Debian's `chromium` and `chromium-driver` packages (`.ci/run` installs them) are driven through
Selenium with the system chromedriver: nothing is downloaded at run time. Without them these
tests skip, saying so. One browser serves the whole module; each test gets a fresh world of two
shops (two connections) and its own daemon. Selenium blocks, and the simulators answer from the
test's event loop, so every browser call runs in a worker thread.

Screenshots are saved under test-artifacts/status-page/ (or $STOCKSYNC_TEST_ARTIFACTS), printed
at the start of the module's first test.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from daemon.sim.harness import SimulatorUrls, run_simulators
from daemon.sim.katana import KatanaSim
from daemon.sim.scenario import Scenario, build_catalogue
from daemon.sim.shopify import ShopifySim
from tests.e2e.conftest import (
    CATALOGUE_SEED,
    CONVERGE_TIMEOUT,
    POLL_INTERVAL_SECONDS,
    REQUESTS_PER_MINUTE,
    DaemonProcess,
    free_port,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ARTIFACTS = Path(os.environ.get("STOCKSYNC_TEST_ARTIFACTS", REPO / "test-artifacts"))
SCREENSHOTS = ARTIFACTS / "status-page"
CATALOGUE_VARIANTS = 60
# The held connection trips the valve at once; the other one never does.
HELD, STEADY = "store-1", "store-2"
DESKTOP = (1280, 1000)
PHONE = (390, 844)  # an iPhone 12-14's CSS viewport
_announced = False  # the screenshot folder is printed once per run


def _missing_browser() -> str | None:
    missing = [
        package
        for package, path in (("chromium", CHROMIUM), ("chromium-driver", CHROMEDRIVER))
        if not os.access(path, os.X_OK)
    ]
    if not missing:
        return None
    return (
        f"{' and '.join(missing)} not installed: the status page's browser tests need Debian's "
        "chromium and chromium-driver packages (apt-get install chromium chromium-driver)"
    )


# ----------------------------------------------------------------------------------- browser


class Browser:
    """One headless Chromium; every call runs in a thread (Selenium blocks)."""

    def __init__(self, driver: webdriver.Chrome) -> None:
        self.driver = driver
        self.console: list[dict[str, Any]] = []

    async def run(self, script: str, *args: Any) -> Any:
        """Execute JavaScript in the page and return its value."""
        return await asyncio.to_thread(self.driver.execute_script, script, *args)

    async def open(self, url: str) -> None:
        """Navigate (a real page load)."""
        await asyncio.to_thread(self.driver.get, url)

    async def size(self, width: int, height: int) -> None:
        """Resize the window."""
        await asyncio.to_thread(self.driver.set_window_size, width, height)

    async def text(self, css: str) -> str:
        """The visible text of the first element matching `css`."""
        found: str = await asyncio.to_thread(
            lambda: self.driver.find_element(By.CSS_SELECTOR, css).text
        )
        return found

    async def type(self, css: str, text: str) -> None:
        """Click into an input and type, key by key, as a person does."""

        def typing() -> None:
            element = self.driver.find_element(By.CSS_SELECTOR, css)
            element.click()
            element.clear()
            element.send_keys(text)

        await asyncio.to_thread(typing)

    async def screenshot(self, name: str) -> Path:
        """Save a PNG of the page; its path."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        await asyncio.to_thread(self.driver.save_screenshot, str(path))
        return path

    async def wait_for(self, script: str, *, what: str, within: float = CONVERGE_TIMEOUT) -> None:
        """Wait until a JavaScript expression (`return ...`) is truthy."""

        async def holds() -> bool:
            return bool(await self.run(script))

        await wait_until(holds, within=within, what=what)

    async def console_errors(self) -> list[dict[str, Any]]:
        """Every console error or failed load since the browser started (kept, not drained)."""
        self.console.extend(await asyncio.to_thread(self.driver.get_log, "browser"))
        return [entry for entry in self.console if entry["level"] in ("SEVERE", "ERROR")]

    async def forget_console(self) -> None:
        """Start a test with an empty console record."""
        await asyncio.to_thread(self.driver.get_log, "browser")
        self.console.clear()


@pytest.fixture(scope="module")
def chromium() -> Iterator[webdriver.Chrome]:
    """One headless Chromium for the module, through the system chromedriver."""
    reason = _missing_browser()
    if reason is not None:
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI containers run as root, where Chromium's sandbox cannot start
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-extensions",
        f"--window-size={DESKTOP[0]},{DESKTOP[1]}",
    ):
        options.add_argument(argument)
    # Console messages and failed loads, readable through get_log("browser").
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


# ----------------------------------------------------------------------------------- world


@dataclass
class TwoShops:
    """Simulated Katana feeding two simulated shops, and the daemon that syncs them."""

    katana: KatanaSim
    shops: dict[str, ShopifySim]
    scenario: Scenario
    urls: SimulatorUrls
    folder: Path
    config: Path
    daemon: DaemonProcess

    @property
    def base_url(self) -> str:
        return self.daemon.base_url

    def differences(self, name: str) -> int:
        shop = self.shops[name]
        expected = self.scenario.expected_levels(name)
        return sum(1 for key, qty in expected.items() if shop.available(*key) != qty)

    async def converged(self, *names: str) -> None:
        for name in names or tuple(self.shops):
            await wait_until(
                lambda name=name: self.differences(name) == 0,
                within=CONVERGE_TIMEOUT,
                what=f"{name} to equal Katana's formula",
                daemon=self.daemon,
            )

    async def status(self, query: str = "") -> dict[str, Any]:
        answer = await self.daemon.get("/status.json" + query)
        assert answer is not None, "the daemon does not answer"
        assert answer[0] == 200, answer[1][:300]
        body: dict[str, Any] = json.loads(answer[1])
        return body

    async def wait_state(self, name: str, state: str) -> None:
        seen: list[str] = []

        async def reached() -> bool:
            body = await self.status()
            [conn] = [c for c in body["connections"] if c["name"] == name]
            seen.append(conn["state"])
            return bool(conn["state"] == state)

        await wait_until(
            reached,
            within=CONVERGE_TIMEOUT,
            what=f"{name} to be {state}",
            explain=lambda: f"last state {seen[-1:]}",
            daemon=self.daemon,
        )


def _per_connection_valve(text: str) -> str:
    """store-1 trips on 3 drops to 0; store-2's valve never trips (drops can't exceed all)."""
    head, *blocks = text.split("[[connections]]")
    edited = []
    for block in blocks:
        name = HELD if f'name = "{HELD}"' in block else STEADY
        fraction = "0.05" if name == HELD else "1.0"
        lines = [
            f"max_drop_fraction = {fraction}" if line.startswith("max_drop_fraction") else line
            for line in block.split("\n")
        ]
        edited.append("\n".join(lines))
    return "[[connections]]".join([head, *edited])


@pytest.fixture
async def two_shops(tmp_path: Path) -> AsyncIterator[TwoShops]:
    """A seeded world with two shops, and `stocksync run` syncing both."""
    katana = KatanaSim(requests_per_minute=REQUESTS_PER_MINUTE)
    sims = [ShopifySim(), ShopifySim()]
    scenario = build_catalogue(katana, sims, variants=CATALOGUE_VARIANTS, seed=CATALOGUE_SEED)
    async with run_simulators(katana, sims) as urls:
        port = free_port()
        config = scenario.write_config(
            tmp_path,
            katana_url=urls.katana,
            shopify_urls=list(urls.shopify),
            state_path=tmp_path / "state" / "state.db",
            http_port=port,
            poll_interval_seconds=POLL_INTERVAL_SECONDS,
            log_format="json",
            min_drop_count=3,
        )
        config.write_text(_per_connection_valve(config.read_text()), encoding="utf-8")
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
        }
        env.update(scenario.secrets_env())
        env["PYTHONUNBUFFERED"] = "1"
        daemon = DaemonProcess(config, env, port, tmp_path / "daemon.log")
        world = TwoShops(
            katana=katana,
            shops={c.name: c.sim for c in scenario.connections},
            scenario=scenario,
            urls=urls,
            folder=tmp_path,
            config=config,
            daemon=daemon,
        )
        try:
            await daemon.start()
            await daemon.wait_ready()
            await world.converged()
            for name in world.shops:
                await world.wait_state(name, "in_sync")
            yield world
        finally:
            await daemon.close()
            print(f"---- daemon.log (last lines) ----\n{daemon.log_tail()}")


@pytest.fixture
async def browser(
    chromium: webdriver.Chrome, two_shops: TwoShops, capsys: pytest.CaptureFixture[str]
) -> AsyncIterator[Browser]:
    """The module's Chromium, at desktop size, with an empty console record.

    It depends on `two_shops` so that it is torn down first: the page leaves while the daemon
    still answers, and a refresh against a daemon being stopped is not counted as an error.
    """
    global _announced
    if not _announced:
        _announced = True
        with capsys.disabled():
            print(f"\n[status page screenshots: {SCREENSHOTS}]", end=" ")
    wrapper = Browser(chromium)
    await wrapper.size(*DESKTOP)
    await wrapper.forget_console()
    yield wrapper
    # Whatever a test did, the page must not have logged an error (or failed a load).
    errors = await wrapper.console_errors()
    await wrapper.open("about:blank")
    assert not errors, f"browser console errors: {errors}"


# ----------------------------------------------------------------------------------- helpers


async def page_state(browser: Browser, name: str) -> str | None:
    found = await browser.run(
        "var e = document.querySelector('[data-connection=\"' + arguments[0] + '\"]');"
        "return e ? e.getAttribute('data-state') : null;",
        name,
    )
    return None if found is None else str(found)


async def visible_problem_skus(browser: Browser) -> list[str]:
    found = await browser.run(
        "return Array.from(document.querySelectorAll('#problems tr[data-sku]'))"
        ".filter(function (r) { return !r.hidden; })"
        ".map(function (r) { return r.getAttribute('data-sku'); });"
    )
    return [str(s) for s in found]


def katana_formula(in_stock: str, committed: str, potential: str, *, kit: bool) -> int:
    """PRODUCT.md §1, written out independently of daemon/domain: floored, never below 0."""
    total = Decimal(in_stock) - Decimal(committed)
    if kit and potential:
        total += Decimal(potential)
    return max(0, math.floor(total))


# ----------------------------------------------------------------------------------- tests


async def test_the_page_shows_each_connections_state_without_console_errors_on_any_screen(
    browser: Browser, two_shops: TwoShops
) -> None:
    await browser.open(two_shops.base_url + "/")

    for name in two_shops.shops:
        assert await page_state(browser, name) == "in_sync"
        card = await browser.text(f'[data-connection="{name}"]')
        assert "In sync" in card
        assert "Last successful poll" in card
        assert "Freshness, last hour" in card
    assert "Data as of" in await browser.text("#as-of-line")
    await browser.screenshot("overview-desktop")

    # The page refreshes itself in place: a marker set now survives the next refresh.
    await browser.run("window.__stillThisPage = true;")
    first = await browser.run("return document.getElementById('status').dataset.generated;")
    await browser.wait_for(
        f"return document.getElementById('status').dataset.generated !== {json.dumps(first)};",
        what="the page to refresh its data",
    )
    assert await browser.run("return window.__stillThisPage === true;")

    # On a phone: nothing wider than the screen, so nothing scrolls sideways.
    await browser.size(*PHONE)
    await browser.wait_for("return window.innerWidth <= 400;", what="the phone-sized window")
    overflow = await browser.run(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth;"
    )
    assert overflow <= 0, f"the page is {overflow}px wider than a phone screen"
    await browser.screenshot("overview-phone")


async def test_a_held_connection_shows_the_command_that_releases_it(
    browser: Browser, two_shops: TwoShops
) -> None:
    await browser.open(two_shops.base_url + "/")
    await browser.run("window.__stillThisPage = true;")
    # Katana says every standard product is gone from every mapped location: store-1's valve
    # holds it; store-2's never trips, so it pushes the zeros.
    katana = two_shops.katana
    mapped = {katana.location_id(name) for name in two_shops.scenario.location_mapping}
    for variant_id in two_shops.scenario.standard:
        for location in mapped:
            katana.set_stock(variant_id, location, 0)

    await browser.wait_for(
        f'return document.querySelector(\'[data-connection="{HELD}"][data-state="held"]\');',
        what=f"{HELD} shown held",
    )
    assert await browser.run("return window.__stillThisPage === true;")  # no reload
    command = await browser.text(f'[data-connection="{HELD}"] code.release')
    assert command == f"stocksync release-hold -c {shlex.quote(str(two_shops.config))} {HELD}"
    assert "Held by the safety valve" in await browser.text(f'[data-connection="{HELD}"]')
    await two_shops.converged(STEADY)
    assert await page_state(browser, STEADY) != "held"
    await browser.screenshot("held-connection")

    # The command shown works as shown, against the running daemon.
    argv = shlex.split(command)
    assert argv[0] == "stocksync"
    released = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "daemon", *argv[1:]],
        capture_output=True,
        text=True,
        env=two_shops.daemon.env,
        timeout=60,
        check=False,
    )
    assert released.returncode == 0, released.stdout + released.stderr
    assert "hold released" in released.stdout
    await two_shops.converged(HELD)
    await browser.wait_for(
        f"return document.querySelector('[data-connection=\"{HELD}\"]')"
        ".getAttribute('data-state') !== 'held';",
        what=f"{HELD} no longer shown held",
    )


async def test_the_sku_search_narrows_the_problem_list(
    browser: Browser, two_shops: TwoShops
) -> None:
    scenario = two_shops.scenario
    target = scenario.katana.variant(scenario.katana_only[0]).sku
    assert target is not None
    await browser.open(two_shops.base_url + "/")
    before = await visible_problem_skus(browser)
    assert target.casefold() in before
    assert len(set(before)) > 1

    await browser.type("#q", target)

    # At once, in the page; then from the server, whose counts say "1 of N".
    await browser.wait_for(
        "return Array.from(document.querySelectorAll('#problems tr[data-sku]'))"
        ".filter(function (r) { return !r.hidden; }).length > 0 && "
        "Array.from(document.querySelectorAll('#problems tr[data-sku]'))"
        ".every(function (r) { return r.hidden || "
        f"r.getAttribute('data-sku').indexOf({json.dumps(target.casefold())}) >= 0; }});",
        what="only matching problem rows shown",
    )
    await browser.wait_for(
        "return /[?&]q=/.test(window.location.search) && "
        "(document.querySelector('#problems h2') || {}).textContent.indexOf('matching') >= 0;",
        what="the server's filtered answer",
    )
    after = await visible_problem_skus(browser)
    assert set(after) == {target.casefold()}
    assert len(after) < len(before)
    counts = await browser.text('[data-group="unmapped"] summary')
    assert " of " in counts
    await browser.screenshot("sku-search")


async def test_the_sku_view_matches_katanas_formula(browser: Browser, two_shops: TwoShops) -> None:
    scenario = two_shops.scenario
    katana = two_shops.katana
    shop_of = {v.inventory_item_id: c.sim for c in scenario.connections for v in c.variants}
    for variant_id, kit in ((scenario.kits[0], True), (scenario.standard[0], False)):
        sku = katana.variant(variant_id).sku
        assert sku is not None
        await browser.open(f"{two_shops.base_url}/status?sku={sku}")
        await browser.wait_for(
            f"return document.querySelector('[data-variant=\"{variant_id}\"] table.katana');",
            what=f"Katana's stock of {sku}",
        )
        rows = await browser.run(
            "return Array.from(document.querySelectorAll("
            f"'[data-variant=\"{variant_id}\"] table.katana tr[data-katana-location]'))"
            ".map(function (r) { return {"
            "location: Number(r.getAttribute('data-katana-location')),"
            "in_stock: r.querySelector('.in-stock').textContent,"
            "committed: r.querySelector('.committed').textContent,"
            "potential: r.querySelector('.potential').textContent,"
            "result: Number(r.querySelector('.result').textContent)}; });"
        )
        assert rows, f"no Katana rows shown for {sku}"
        for row in rows:
            location = row["location"]
            # What the page shows is Katana's data ...
            assert Decimal(row["in_stock"]) == katana.in_stock(variant_id, location)
            assert Decimal(row["committed"]) == katana.committed(variant_id, location)
            # ... and its result is the formula of those figures.
            expected = katana_formula(row["in_stock"], row["committed"], row["potential"], kit=kit)
            assert row["result"] == expected
            assert expected == scenario.desired_quantity(variant_id, location)
        levels = await browser.run(
            "return Array.from(document.querySelectorAll("
            f"'[data-variant=\"{variant_id}\"] table.levels tr[data-level]'))"
            ".map(function (r) { return {"
            "level: r.getAttribute('data-level'),"
            "katana: Number(r.getAttribute('data-katana-location')),"
            "desired: r.querySelector('.desired').textContent,"
            "told: r.querySelector('.last-told').textContent}; });"
        )
        assert levels, f"no Shopify levels shown for {sku}"
        for level in levels:
            want = scenario.desired_quantity(variant_id, level["katana"])
            assert level["desired"] == str(want)
            item, location = level["level"].split("@")
            shown = shop_of[item].available(item, location)
            if shown is not None:  # stocked there: Shopify shows what it was last told
                assert level["told"] == str(shown)
        assert "in stock" in await browser.text(f'[data-variant="{variant_id}"]')
    await browser.screenshot("sku-view")
