"""Config of the merchant controls (issue 18): pooled locations, [connections.filters], and the
variant map's units_per_pack and buffer columns. Every problem names file, key path and value."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.config import ConfigError, LocationMapping, read_variant_map
from daemon.domain.controls import SyncFilter, TargetRule
from tests.unit.test_config import CONNECTION, errors, load, one_error, write_map

SHOP_1 = "gid://shopify/Location/1"
SHOP_2 = "gid://shopify/Location/2"
HEADER = "katana_variant_id,shopify_variant_id"


def entry(katana: str, shopify: str = f'"{SHOP_1}"') -> str:
    return f"[[connections.locations]]\nkatana = {katana}\nshopify = {shopify}\n"


# --- pooled locations ---------------------------------------------------------------------------


def test_a_pool_lists_several_katana_locations_in_one_entry(tmp_path: Path) -> None:
    conn = load(tmp_path, locations=entry('["Warehouse", 7]')).connections[0]
    assert conn.locations == (LocationMapping(katana=("Warehouse", 7), shopify=(SHOP_1,)),)
    assert conn.locations[0].members == ("Warehouse", 7)


def test_a_location_may_feed_its_own_shopify_location_and_a_pool(tmp_path: Path) -> None:
    locations = entry('"Warehouse"', f'"{SHOP_2}"') + entry('["Warehouse", "Overflow"]')
    conn = load(tmp_path, locations=locations).connections[0]
    assert [m.katana for m in conn.locations] == ["Warehouse", ("Warehouse", "Overflow")]


def test_a_pool_of_fewer_than_two_locations_is_refused(tmp_path: Path) -> None:
    message = one_error(tmp_path, locations=entry('["Warehouse"]'))
    assert message.endswith(
        "connections[0].locations[0].katana: a pool lists at least two Katana locations (ids or "
        'names); for one, write it without brackets, got ["Warehouse"]'
    )


def test_a_location_listed_twice_in_a_pool_is_refused(tmp_path: Path) -> None:
    message = one_error(tmp_path, locations=entry('["Warehouse", "Warehouse"]'))
    assert message.endswith(
        'connections[0].locations[0].katana[1]: "Warehouse" is listed twice in the pool'
    )


def test_each_pool_member_is_an_id_or_a_name(tmp_path: Path) -> None:
    message = one_error(tmp_path, locations=entry('["Warehouse", 0]'))
    assert message.endswith(
        "connections[0].locations[0].katana[1]: a Katana location id must be at least 1, got 0"
    )


def test_the_same_pool_in_two_entries_is_refused(tmp_path: Path) -> None:
    locations = entry('["A", "B"]') + entry('["B", "A"]', f'"{SHOP_2}"')
    message = one_error(tmp_path, locations=locations)
    assert message.endswith(
        'connections[0].locations[1].katana: pool ["B", "A"] is already mapped by '
        "connections[0].locations[0]; list all its Shopify locations in that entry"
    )


def test_two_entries_feeding_one_shopify_location_are_refused_naming_the_pool_form(
    tmp_path: Path,
) -> None:
    message = one_error(tmp_path, locations=entry('"A"') + entry('["B", "C"]'))
    assert (
        f'connections[0].locations[1].shopify: "{SHOP_1}" is already fed by Katana location '
        '"A" (connections[0].locations[0]); a Shopify location is fed by one entry per '
        "connection: to feed it the sum of several Katana locations, list them in one entry"
    ) in message


# --- sync filters -------------------------------------------------------------------------------


def filters(body: str) -> str:
    return CONNECTION + "[connections.filters]\n" + body + "\n"


def test_filters_take_lists_of_globs_or_a_single_pattern(tmp_path: Path) -> None:
    conn = load(
        tmp_path,
        connection=filters(
            'include_skus = ["ACME-*", "KIT-??"]\nexclude_skus = "*-SAMPLE"\n'
            'include_categories = ["Finished*"]\nexclude_categories = ["Spare parts"]'
        ),
    ).connections[0]
    assert conn.filters == SyncFilter(
        include_skus=("ACME-*", "KIT-??"),
        exclude_skus=("*-SAMPLE",),
        include_categories=("Finished*",),
        exclude_categories=("Spare parts",),
    )


def test_without_filters_every_variant_syncs(tmp_path: Path) -> None:
    assert not load(tmp_path).connections[0].filters.active


def test_an_empty_filter_list_is_refused(tmp_path: Path) -> None:
    message = one_error(tmp_path, connection=filters("include_skus = []"))
    assert message.endswith(
        "connections[0].filters.include_skus: must not be an empty list: leave include_skus out "
        "to apply no such rule"
    )


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ('["A*", 3]', "include_skus[1]: must be a glob pattern (a string), got 3 (an integer)"),
        ('["A*", ""]', 'include_skus[1]: must not be empty, got ""'),
        ('[" A*"]', "include_skus[0]: must not start or end with spaces"),
        ('["A*", "A*"]', 'include_skus[1]: "A*" is listed twice'),
        ("7", "include_skus: must be a glob pattern or a list of them"),
    ],
)
def test_each_filter_pattern_is_checked_naming_its_key_and_value(
    tmp_path: Path, value: str, problem: str
) -> None:
    message = one_error(tmp_path, connection=filters(f"include_skus = {value}"))
    assert f"stocksync.toml: connections[0].filters.{problem}" in message


def test_a_pattern_both_included_and_excluded_is_refused(tmp_path: Path) -> None:
    message = one_error(
        tmp_path, connection=filters('include_categories = ["Tools"]\nexclude_categories = "Tools"')
    )
    assert message.endswith(
        'connections[0].filters.exclude_categories: "Tools" is also in include_categories: a '
        "variant it matches would be both kept and left out"
    )


def test_an_unknown_filter_key_suggests_the_closest(tmp_path: Path) -> None:
    message = one_error(tmp_path, connection=filters('include_sku = ["A*"]'))
    assert message.endswith(
        'connections[0].filters.include_sku: unknown key (did you mean "include_skus"?)'
    )


# --- variant map: units_per_pack, buffer ----------------------------------------------------------


def test_variant_map_units_per_pack_and_buffer_give_a_row_its_own_rule(tmp_path: Path) -> None:
    path = write_map(
        tmp_path, f"{HEADER},units_per_pack,buffer\n1,10,,\n1,16,6,\n1,112,12,4\n2,20,,3\n"
    )
    read = read_variant_map(path)
    gid = "gid://shopify/ProductVariant/{}".format
    assert read.entries == {1: (gid(10), gid(16), gid(112)), 2: gid(20)}
    assert read.rules == {
        gid(16): TargetRule(units_per_pack=6),
        gid(112): TargetRule(units_per_pack=12, buffer=4),
        gid(20): TargetRule(buffer=3),
    }


def test_variant_map_optional_columns_come_in_either_order(tmp_path: Path) -> None:
    path = write_map(tmp_path, f"{HEADER},buffer,units_per_pack\n1,10,2,6\n")
    assert read_variant_map(path).rules == {
        "gid://shopify/ProductVariant/10": TargetRule(units_per_pack=6, buffer=2)
    }


def test_a_buffer_of_zero_in_the_variant_map_is_a_rule_of_its_own(tmp_path: Path) -> None:
    path = write_map(tmp_path, f"{HEADER},buffer\n1,10,0\n")
    assert read_variant_map(path).rules == {"gid://shopify/ProductVariant/10": TargetRule(buffer=0)}


def map_errors(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        read_variant_map(write_map(tmp_path, text))
    return caught.value.errors


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "six", "1000000001"])
def test_variant_map_units_per_pack_is_a_whole_number_from_1(tmp_path: Path, value: str) -> None:
    (message,) = map_errors(tmp_path, f"{HEADER},units_per_pack\n1,10,{value}\n")
    assert message == (
        f"{tmp_path / 'map.csv'}:2: units_per_pack must be a whole number of Katana units in one "
        f'pack between 1 and 1,000,000,000, or empty, got "{value}"'
    )


@pytest.mark.parametrize("value", ["-1", "2.5", "x"])
def test_variant_map_buffer_is_a_whole_number_from_0(tmp_path: Path, value: str) -> None:
    (message,) = map_errors(tmp_path, f"{HEADER},buffer\n1,10,{value}\n")
    assert message.startswith(
        f"{tmp_path / 'map.csv'}:2: buffer must be a whole number of Katana units held back "
        "between 0 and 1,000,000,000, or empty"
    )


def test_variant_map_unknown_or_repeated_column_is_refused(tmp_path: Path) -> None:
    (message,) = map_errors(tmp_path, f"{HEADER},pack\n1,10,6\n")
    assert message.startswith(f'{tmp_path / "map.csv"}:1: unknown column "pack": expected')
    (message,) = map_errors(tmp_path, f"{HEADER},buffer,buffer\n1,10,6,6\n")
    assert message.startswith(f'{tmp_path / "map.csv"}:1: column "buffer" is listed twice')


def test_variant_map_same_shopify_variant_on_two_rows_names_both_lines(tmp_path: Path) -> None:
    (message,) = map_errors(tmp_path, f"{HEADER},units_per_pack\n1,10,\n1,10,6\n")
    assert message.startswith(
        f"{tmp_path / 'map.csv'}:3: Shopify variant gid://shopify/ProductVariant/10 is already "
        "fed by Katana variant 1 (line 2)"
    )


def test_variant_map_row_with_the_optional_columns_has_as_many_cells(tmp_path: Path) -> None:
    (message,) = map_errors(tmp_path, f"{HEADER},units_per_pack,buffer\n1,10,6\n")
    assert message.startswith(
        f"{tmp_path / 'map.csv'}:2: expected 4 columns "
        "(katana_variant_id,shopify_variant_id,units_per_pack,buffer), got 3"
    )


def test_connection_carries_its_variant_map_rules(tmp_path: Path) -> None:
    write_map(tmp_path, f"{HEADER},units_per_pack\n1,10,6\n")
    conn = load(tmp_path, connection=CONNECTION + 'variant_map_file = "map.csv"').connections[0]
    assert dict(conn.target_rules) == {
        "gid://shopify/ProductVariant/10": TargetRule(units_per_pack=6)
    }
    assert conn.variant_map == {1: "gid://shopify/ProductVariant/10"}


def test_connection_variant_map_column_problems_are_config_problems(tmp_path: Path) -> None:
    write_map(tmp_path, f"{HEADER},units_per_pack\n1,10,0\n")
    found = errors(tmp_path, connection=CONNECTION + 'variant_map_file = "map.csv"')
    assert len(found) == 1
    assert found[0].startswith(f"{tmp_path / 'map.csv'}:2: units_per_pack must be")


# --- check-config -------------------------------------------------------------------------------


def test_check_config_summary_shows_pools_pack_sizes_buffers_and_filters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from daemon.cli import main
    from tests.unit.test_config import ENV, config_text, write

    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    write_map(tmp_path, f"{HEADER},units_per_pack,buffer\n1,10,,\n1,16,6,2\n1,112,12,\n")
    path = write(
        tmp_path,
        config_text(
            connection=filters('include_skus = "ACME-*"').replace(
                "[connections.filters]", 'variant_map_file = "map.csv"\n[connections.filters]'
            ),
            locations=entry('["Warehouse", "Overflow"]') + entry('"Outlet"', f'"{SHOP_2}"'),
        ),
    )
    assert main(["check-config", "-c", str(path)]) == 0
    out = capsys.readouterr().out
    assert (
        "eu (eu.myshopify.com): sync off, 3 Katana locations -> 2 Shopify locations "
        "(1 pool: summed), variant map 3 entries (2 pack sizes, 1 buffer of their own), "
        "filters: include_skus ['ACME-*']"
    ) in out


def test_the_example_configs_commented_pool_and_filters_load_when_uncommented(
    tmp_path: Path,
) -> None:
    from daemon.config import load_settings
    from tests.unit.test_config import REPO

    example = (REPO / "config" / "stocksync.example.toml").read_text()
    text = "\n".join(
        line.replace("  #   ", "  ", 1) if line.startswith("  #   ") else line
        for line in example.splitlines()
    )
    (tmp_path / "variant-map.example.csv").write_text(
        (REPO / "config" / "variant-map.example.csv").read_text()
    )
    path = tmp_path / "stocksync.toml"
    path.write_text(text)
    (conn,) = load_settings(
        path, {"KATANA_API_KEY": "k", "SHOPIFY_TOKEN_EU_STORE": "t"}
    ).connections
    assert conn.locations[-1].katana == ("Main warehouse", "Overflow")
    assert conn.filters.exclude_categories == ("Spare parts", "Raw *")
    assert dict(conn.target_rules) == {
        "gid://shopify/ProductVariant/44001234567892": TargetRule(units_per_pack=6),
        "gid://shopify/ProductVariant/44001234567891": TargetRule(buffer=2),
    }
