"""Merchant controls (issue 18) end to end: Katana categories kept in the state file, and whole
cycles against the simulators for pooled locations, sync filters, pack sizes and per-variant
buffers, reloads included."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from daemon.katana.models import KatanaItem, KatanaVariantRow
from daemon.store import APPLICATION_ID, MIGRATIONS, StateStore
from tests.integration.conftest import World

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


# --- categories in the catalogue cache ------------------------------------------------------------


async def test_a_products_category_is_kept_in_the_state_file_and_reaches_its_variants(
    tmp_path: Path,
) -> None:
    store = await StateStore.open(tmp_path / "state.db")
    try:
        await store.save_catalogue(
            [
                KatanaVariantRow(1, "A", 10, None, T0, T0),
                KatanaVariantRow(2, "M", None, 20, T0, T0),
            ],
            [
                KatanaItem(10, "product", False, False, T0, category="Finished goods"),
                KatanaItem(20, "material", False, False, T0),
            ],
            [],
        )
        catalogue = await store.catalogue()
    finally:
        await store.close()
    assert catalogue.variants[1].category == "Finished goods"
    assert catalogue.variants[2].category is None


async def test_a_state_file_from_before_categories_gets_the_column_and_reads_items_again(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.db"
    mine = next(i for i, m in enumerate(MIGRATIONS) if any("category" in s for s in m))
    raw = sqlite3.connect(path)
    for statement in (s for migration in MIGRATIONS[:mine] for s in migration):
        raw.execute(statement)
    stamp = "2025-03-01T12:00:00.000000+00:00"
    raw.execute("INSERT INTO catalogue_items VALUES ('product', 10, 0, 0, ?)", (stamp,))
    for source in ("items", "variants"):
        raw.execute("INSERT INTO cursors VALUES (?, '2025-03-01T12:00:00.000000+00:00')", (source,))
    raw.execute(f"PRAGMA user_version = {mine}")
    raw.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    raw.commit()
    raw.close()

    store = await StateStore.open(path)
    try:
        # Without the items cursor the next cycle reads every product and material again.
        assert set(await store.cursors()) == {"variants"}
        await store.save_catalogue(
            [], [KatanaItem(10, "product", False, False, T0, category="Tools")], []
        )
        catalogue = await store.catalogue()
    finally:
        await store.close()
    assert catalogue.holds_item(KatanaItem(10, "product", False, False, T0, category="Tools"))


async def test_a_category_edited_in_katana_rebuilds_the_mapping_but_rereads_no_stock(
    world: World,
) -> None:
    variant_id, twin = world.product("CAT", stock=4)
    assert twin is not None
    async with world.runtime() as runtime:
        engine = runtime.engine
        await engine.cycle()
        product_id = engine.katana_variants()[variant_id].product_id
        assert product_id is not None
        world.katana.set_category("product", product_id, "Seasonal")

        report = await engine.cycle()

        assert engine.katana_variants()[variant_id].category == "Seasonal"
        assert report.changed_variants == 0
        assert await runtime.store.dirty("shop") == {}
