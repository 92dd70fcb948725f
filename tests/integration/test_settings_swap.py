"""A reload swaps one settings object, in one call, and nothing keeps the old one."""

from __future__ import annotations

import gc
import weakref

from tests.integration.conftest import World


async def test_a_reload_swaps_one_settings_object_and_nothing_else_holds_an_old_copy(
    world: World,
) -> None:
    _, twin = world.product("SWAP", stock=3)
    assert twin is not None
    old = world.settings("buffer = 1")
    old_settings, old_connection = weakref.ref(old), weakref.ref(old.connections[0])
    async with world.runtime(old) as runtime:
        engine = runtime.engine
        await engine.cycle()
        assert world.levels(twin) == (2, 2)
        del old

        new = world.settings("buffer = 0")
        await engine.apply(new, runtime.clients(new))
        gc.collect()

        assert engine.settings is new
        assert engine.mappings["shop"].settings is new.connections[0]
        assert old_settings() is None  # nothing kept the previous configuration
        assert old_connection() is None
        world.katana.adjust_stock(world.katana.variants()[0].id, world.warehouse, 1)
        await engine.cycle()

    assert world.levels(twin) == (4, 4)  # the new buffer applies
