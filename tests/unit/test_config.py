"""Configuration (PRODUCT.md §4, §5 and docs/design.md "Config"): one test per rule."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import pytest

from daemon.config import (
    ConfigError,
    LocationMapping,
    Secret,
    Settings,
    UnknownConnection,
    load_settings,
    load_variant_map,
)
from daemon.domain.quantity import QuantityPolicy

REPO = Path(__file__).resolve().parents[2]
KATANA_SECRET = "katana-secret-value-123"
SHOPIFY_SECRET = "shpat_shopifysecret456"
ENV = {"KATANA_KEY": KATANA_SECRET, "EU_TOKEN": SHOPIFY_SECRET}

KATANA = 'api_key_env = "KATANA_KEY"'
CONNECTION = """name = "eu"
shop = "eu.myshopify.com"
access_token_env = "EU_TOKEN"
"""
LOCATIONS = """[[connections.locations]]
katana = "Main"
shopify = "gid://shopify/Location/1"
"""


def config_text(
    *,
    top: str = "",
    daemon: str = "",
    katana: str = KATANA,
    reconciliation: str = "",
    webhooks: str = "",
    connection: str = CONNECTION,
    locations: str = LOCATIONS,
    more: str = "",
) -> str:
    """A valid config with the given sections' bodies swapped in."""
    return (
        f"{top}\n[daemon]\n{daemon}\n[katana]\n{katana}\n[reconciliation]\n{reconciliation}\n"
        f"[webhooks]\n{webhooks}\n[[connections]]\n{connection}\n{locations}\n{more}\n"
    )


def write(folder: Path, text: str, name: str = "stocksync.toml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def load(
    tmp_path: Path, text: str | None = None, env: Mapping[str, str] = ENV, **parts: str
) -> Settings:
    return load_settings(write(tmp_path, text if text is not None else config_text(**parts)), env)


def errors(
    tmp_path: Path, text: str | None = None, env: Mapping[str, str] = ENV, **parts: str
) -> list[str]:
    path = write(tmp_path, text if text is not None else config_text(**parts))
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env)
    return caught.value.errors


def one_error(tmp_path: Path, *, env: Mapping[str, str] = ENV, **parts: str) -> str:
    found = errors(tmp_path, config_text(**parts), env)
    assert len(found) == 1, found
    return found[0]


# --- defaults ----------------------------------------------------------------------------------


def test_minimal_config_gets_the_documented_defaults(tmp_path: Path) -> None:
    settings = load(tmp_path)
    assert settings.source == tmp_path / "stocksync.toml"
    d = settings.daemon
    assert d.state_path == Path("/var/lib/stocksync/state.db")
    assert (d.poll_interval_seconds, d.http_host, d.http_port) == (30.0, "127.0.0.1", 9464)
    assert (d.log_format, d.shutdown_timeout_seconds) == ("auto", 10.0)
    assert settings.katana.base_url == "https://api.katanamrp.com/v1"
    assert settings.katana.requests_per_minute == 60
    r = settings.reconciliation
    assert (r.enabled, r.cron, r.timezone, r.lookback_hours, r.full) == (
        True,
        "0 3 * * *",
        "UTC",
        48,
        True,
    )
    assert (settings.webhooks.enabled, settings.webhooks.token) == (False, None)
    (conn,) = settings.connections
    assert conn.admin_url == "https://eu.myshopify.com"
    assert conn.api_version == "2026-10"
    assert conn.sync_inventory is False
    assert (conn.allow_negative, conn.buffer, conn.activate_missing) == (False, 0, False)
    assert (conn.max_drop_fraction, conn.min_drop_count) == (0.5, 20)
    assert conn.bulk_read_threshold == 20000
    assert (conn.variant_map_file, dict(conn.variant_map)) == (None, {})
    assert conn.locations == (
        LocationMapping(katana="Main", shopify=("gid://shopify/Location/1",)),
    )


def test_katana_api_key_defaults_to_the_katana_api_key_variable(tmp_path: Path) -> None:
    settings = load(tmp_path, katana="", env={"KATANA_API_KEY": "k1", "EU_TOKEN": "t"})
    assert settings.katana.api_key.reveal() == "k1"


def test_default_env_mapping_is_the_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KATANA_KEY", "from-os")
    monkeypatch.setenv("EU_TOKEN", "token-from-os")
    settings = load_settings(write(tmp_path, config_text()))
    assert settings.katana.api_key.reveal() == "from-os"


def test_secrets_are_secret_objects_revealing_the_value(tmp_path: Path) -> None:
    settings = load(tmp_path)
    assert isinstance(settings.katana.api_key, Secret)
    assert settings.katana.api_key.reveal() == KATANA_SECRET
    token = settings.connections[0].access_token
    assert token is not None
    assert token.reveal() == SHOPIFY_SECRET


def test_graphql_url_is_admin_url_then_api_version(tmp_path: Path) -> None:
    conn = load(
        tmp_path,
        connection=CONNECTION + 'admin_url = "http://127.0.0.1:8080/"\napi_version = "2026-01"',
    ).connections[0]
    assert conn.admin_url == "http://127.0.0.1:8080"
    assert conn.graphql_url == "http://127.0.0.1:8080/admin/api/2026-01/graphql.json"


def test_policy_carries_buffer_and_allow_negative(tmp_path: Path) -> None:
    conn = load(tmp_path, connection=CONNECTION + "buffer = 3\nallow_negative = true").connections[
        0
    ]
    assert conn.policy == QuantityPolicy(buffer=3, allow_negative=True)


def test_settings_are_immutable(tmp_path: Path) -> None:
    settings = load(tmp_path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.daemon.poll_interval_seconds = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        settings.connections[0].variant_map[1] = "x"  # type: ignore[index]


def test_connection_lookup_by_name_and_unknown_name_lists_known_names(tmp_path: Path) -> None:
    settings = load(tmp_path)
    assert settings.connection("eu").name == "eu"
    with pytest.raises(UnknownConnection, match=r"'us'.*known: eu"):
        settings.connection("us")


# --- [daemon] ----------------------------------------------------------------------------------


def test_poll_interval_below_one_second_is_rejected(tmp_path: Path) -> None:
    message = one_error(tmp_path, daemon="poll_interval_seconds = 0.5")
    assert "daemon.poll_interval_seconds: must be at least 1, got 0.5" in message


def test_poll_interval_may_be_fractional(tmp_path: Path) -> None:
    assert load(tmp_path, daemon="poll_interval_seconds = 1.5").daemon.poll_interval_seconds == 1.5


def test_non_finite_numbers_are_rejected(tmp_path: Path) -> None:
    message = one_error(tmp_path, daemon="poll_interval_seconds = inf")
    assert "daemon.poll_interval_seconds: must be a finite number, got inf" in message


def test_http_listen_accepts_bracketed_ipv6(tmp_path: Path) -> None:
    d = load(tmp_path, daemon='http_listen = "[::1]:9500"').daemon
    assert (d.http_host, d.http_port) == ("::1", 9500)


@pytest.mark.parametrize(
    "listen", ["9464", "localhost", "::1:9464", "host:0", "host:70000", "host:port", ":9464"]
)
def test_http_listen_must_be_host_colon_port(tmp_path: Path, listen: str) -> None:
    message = one_error(tmp_path, daemon=f'http_listen = "{listen}"')
    assert 'daemon.http_listen: must be "host:port"' in message
    assert f'got "{listen}"' in message


def test_log_level_defaults_to_info(tmp_path: Path) -> None:
    assert load(tmp_path).daemon.log_level == "info"


def test_log_level_must_be_debug_info_warning_or_error(tmp_path: Path) -> None:
    assert load(tmp_path, daemon='log_level = "debug"').daemon.log_level == "debug"
    message = one_error(tmp_path, daemon='log_level = "verbose"')
    assert 'daemon.log_level: must be one of debug, info, warning, error, got "verbose"' in message


def test_log_format_must_be_auto_json_or_console(tmp_path: Path) -> None:
    assert load(tmp_path, daemon='log_format = "json"').daemon.log_format == "json"
    message = one_error(tmp_path, daemon='log_format = "xml"')
    assert 'daemon.log_format: must be one of auto, json, console, got "xml"' in message


def test_shutdown_timeout_must_be_positive(tmp_path: Path) -> None:
    message = one_error(tmp_path, daemon="shutdown_timeout_seconds = 0")
    assert "daemon.shutdown_timeout_seconds: must be greater than 0, got 0" in message


def test_state_path_that_is_a_folder_is_rejected(tmp_path: Path) -> None:
    message = one_error(tmp_path, daemon=f'state_path = "{tmp_path}"')
    assert f'daemon.state_path: "{tmp_path}" is a folder' in message


def test_relative_paths_resolve_against_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    (folder / "token").write_text("tok\n")
    (folder / "map.csv").write_text("katana_variant_id,shopify_variant_id\n1,2\n")
    text = config_text(
        daemon='state_path = "state/db.sqlite"',
        connection=(
            'name = "eu"\nshop = "eu.myshopify.com"\naccess_token_file = "token"\n'
            'variant_map_file = "map.csv"'
        ),
    )
    monkeypatch.chdir(tmp_path)
    settings = load_settings(write(folder, text), ENV)
    assert settings.daemon.state_path == folder / "state" / "db.sqlite"
    conn = settings.connections[0]
    assert conn.variant_map_file == folder / "map.csv"
    assert dict(conn.variant_map) == {1: "gid://shopify/ProductVariant/2"}
    assert conn.access_token is not None
    assert conn.access_token.reveal() == "tok"


# --- [katana] ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 10001])
def test_requests_per_minute_must_be_between_1_and_10000(tmp_path: Path, value: int) -> None:
    message = one_error(tmp_path, katana=f"{KATANA}\nrequests_per_minute = {value}")
    assert f"katana.requests_per_minute: must be between 1 and 10000, got {value}" in message


def test_katana_base_url_must_be_an_http_url(tmp_path: Path) -> None:
    message = one_error(tmp_path, katana=f'{KATANA}\nbase_url = "api.katanamrp.com"')
    assert "katana.base_url: must be an http(s) URL" in message
    assert 'got "api.katanamrp.com"' in message


def test_katana_base_url_loses_its_trailing_slash(tmp_path: Path) -> None:
    settings = load(tmp_path, katana=f'{KATANA}\nbase_url = "http://localhost:9000/v1/"')
    assert settings.katana.base_url == "http://localhost:9000/v1"


# --- [reconciliation] --------------------------------------------------------------------------


@pytest.mark.parametrize("cron", ["61 3 * * *", "0 3 * *"])
def test_invalid_cron_expression_is_rejected(tmp_path: Path, cron: str) -> None:
    message = one_error(tmp_path, reconciliation=f'cron = "{cron}"')
    assert f'reconciliation.cron: invalid cron expression "{cron}"' in message


def test_numeric_day_of_week_is_rejected_because_apscheduler_counts_from_monday(
    tmp_path: Path,
) -> None:
    message = one_error(tmp_path, reconciliation='cron = "0 3 * * 0"')
    assert "reconciliation.cron: write the day of week by name (mon-sun)" in message
    assert load(tmp_path, reconciliation='cron = "30 2 * * sun"').reconciliation.cron == (
        "30 2 * * sun"
    )


def test_unknown_timezone_is_rejected(tmp_path: Path) -> None:
    message = one_error(tmp_path, reconciliation='timezone = "Mars/Olympus"')
    assert 'reconciliation.timezone: unknown time zone "Mars/Olympus"' in message


def test_timezone_is_an_iana_name(tmp_path: Path) -> None:
    settings = load(tmp_path, reconciliation='timezone = "Europe/Berlin"')
    assert settings.reconciliation.timezone == "Europe/Berlin"


def test_lookback_hours_must_be_positive(tmp_path: Path) -> None:
    message = one_error(tmp_path, reconciliation="lookback_hours = 0")
    assert "reconciliation.lookback_hours: must be at least 1, got 0" in message


# --- [webhooks] --------------------------------------------------------------------------------


def test_webhook_token_is_required_only_when_enabled(tmp_path: Path) -> None:
    message = one_error(tmp_path, webhooks="enabled = true")
    assert "webhooks.token_env: is required: set token_env or token_file" in message
    env = {**ENV, "HOOK": "hook-secret"}
    settings = load(tmp_path, webhooks='enabled = true\ntoken_env = "HOOK"', env=env)
    assert settings.webhooks.token == Secret("hook-secret")


def test_webhook_token_is_not_read_while_webhooks_are_disabled(tmp_path: Path) -> None:
    settings = load(tmp_path, webhooks='enabled = false\ntoken_env = "NOT_SET_ANYWHERE"')
    assert settings.webhooks.token is None


# --- types -------------------------------------------------------------------------------------


def test_boolean_is_not_an_integer(tmp_path: Path) -> None:
    message = one_error(tmp_path, connection=CONNECTION + "buffer = true")
    assert "connections[0].buffer: must be an integer, got true (a boolean)" in message


def test_float_is_not_an_integer(tmp_path: Path) -> None:
    message = one_error(tmp_path, connection=CONNECTION + "min_drop_count = 2.5")
    assert "connections[0].min_drop_count: must be an integer, got 2.5 (a float)" in message


def test_string_is_not_a_boolean(tmp_path: Path) -> None:
    message = one_error(tmp_path, connection=CONNECTION + 'sync_inventory = "yes"')
    assert 'connections[0].sync_inventory: must be true or false, got "yes" (a string)' in message


def test_section_that_is_not_a_table_is_rejected(tmp_path: Path) -> None:
    text = config_text().replace("[daemon]\n", "", 1)
    message = errors(tmp_path, text=f"daemon = 5\n{text}")[0]
    assert "daemon: must be a table ([daemon]), got 5 (an integer)" in message


def test_connections_must_be_an_array_of_tables(tmp_path: Path) -> None:
    text = config_text().replace("[[connections]]", "[connections]")
    text = text.replace("[[connections.locations]]", "[connections.locations]")
    message = errors(tmp_path, text=text)[0]
    assert "connections: must be an array of tables ([[connections]])" in message


# --- unknown keys ------------------------------------------------------------------------------


def test_unknown_key_suggests_the_closest_known_key(tmp_path: Path) -> None:
    message = one_error(tmp_path, daemon="poll_intervall_seconds = 10")
    assert 'daemon.poll_intervall_seconds: unknown key (did you mean "poll_interval_seconds"?)' in (
        message
    )


def test_unknown_top_level_key_names_the_section_it_belongs_in(tmp_path: Path) -> None:
    message = one_error(tmp_path, top="poll_interval_seconds = 10")
    assert "poll_interval_seconds: unknown key here (it belongs in [daemon])" in message


def test_unknown_key_in_a_location_entry_is_rejected(tmp_path: Path) -> None:
    message = one_error(tmp_path, locations=LOCATIONS + 'shopfy = "x"')
    assert 'connections[0].locations[0].shopfy: unknown key (did you mean "shopify"?)' in message


# --- secrets -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ("katana", "api_key"),
        ("connection", "access_token"),
        ("connection", "client_secret"),
        ("webhooks", "token"),
    ],
)
def test_secret_written_in_the_config_is_rejected_pointing_to_env_or_file(
    tmp_path: Path, section: str, key: str
) -> None:
    parts = {"katana": KATANA, "connection": CONNECTION, "webhooks": ""}
    parts[section] += f'\n{key} = "inline-secret-789"'
    found = errors(tmp_path, config_text(**parts))
    prefix = {"katana": "katana.", "connection": "connections[0].", "webhooks": "webhooks."}
    message = next(e for e in found if f"{prefix[section]}{key}:" in e)
    assert f"set {key}_env" in message
    assert f"{key}_file" in message
    assert all("inline-secret-789" not in e for e in found)


def test_missing_secret_variable_names_the_key_and_the_variable(tmp_path: Path) -> None:
    message = one_error(tmp_path, katana='api_key_env = "NOPE_NOT_SET"')
    assert message.endswith("katana.api_key_env: environment variable NOPE_NOT_SET is not set")


def test_empty_secret_variable_is_rejected(tmp_path: Path) -> None:
    found = errors(tmp_path, env={**ENV, "EU_TOKEN": ""})
    assert found == [
        f"{tmp_path / 'stocksync.toml'}: connections[0].access_token_env: "
        "environment variable EU_TOKEN is empty"
    ]


def test_secret_file_loses_its_trailing_newline(tmp_path: Path) -> None:
    (tmp_path / "katana.key").write_text("key-from-file\n")
    settings = load(tmp_path, katana='api_key_file = "katana.key"')
    assert settings.katana.api_key.reveal() == "key-from-file"


def test_unreadable_secret_file_names_the_key_and_the_file(tmp_path: Path) -> None:
    message = one_error(tmp_path, katana='api_key_file = "missing.key"')
    assert f'katana.api_key_file: cannot read "{tmp_path / "missing.key"}"' in message
    assert "No such file or directory" in message


def test_empty_secret_file_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "katana.key").write_text("\n")
    message = one_error(tmp_path, katana='api_key_file = "katana.key"')
    assert f'katana.api_key_file: "{tmp_path / "katana.key"}" is empty' in message


def test_secret_from_both_variable_and_file_is_rejected(tmp_path: Path) -> None:
    message = one_error(tmp_path, katana=f'{KATANA}\napi_key_file = "k"')
    assert "katana.api_key_env: set api_key_env or api_key_file, not both" in message


@pytest.mark.parametrize("pasted", ["shpat_0123456789abcdef", "0b7e-4c1f-9a2d-secret"])
def test_secret_pasted_where_a_variable_name_belongs_is_not_echoed(
    tmp_path: Path, pasted: str
) -> None:
    message = one_error(tmp_path, connection=CONNECTION.replace("EU_TOKEN", pasted))
    assert "connections[0].access_token_env:" in message
    assert "not shown" in message
    assert pasted not in message


def test_secrets_never_appear_in_errors_or_reprs(tmp_path: Path) -> None:
    settings = load(tmp_path)
    shown = repr(settings) + str(settings)
    assert KATANA_SECRET not in shown
    assert SHOPIFY_SECRET not in shown
    assert "Secret('***')" in shown
    path = write(tmp_path, config_text(daemon="poll_interval_seconds = 0"))
    with pytest.raises(ConfigError) as caught:
        load_settings(path, ENV)
    assert KATANA_SECRET not in str(caught.value) + repr(caught.value)
    assert SHOPIFY_SECRET not in str(caught.value) + repr(caught.value)


# --- Shopify auth ------------------------------------------------------------------------------


def test_client_credentials_are_an_auth_method(tmp_path: Path) -> None:
    connection = (
        'name = "eu"\nshop = "eu.myshopify.com"\nclient_id = "abc"\nclient_secret_env = "CS"'
    )
    conn = load(tmp_path, connection=connection, env={**ENV, "CS": "cs-secret"}).connections[0]
    assert (conn.access_token, conn.client_id, conn.client_secret) == (
        None,
        "abc",
        Secret("cs-secret"),
    )


def test_both_auth_methods_at_once_are_rejected(tmp_path: Path) -> None:
    env = {**ENV, "CS": "cs"}
    connection = CONNECTION + 'client_id = "abc"\nclient_secret_env = "CS"'
    message = one_error(tmp_path, connection=connection, env=env)
    assert "connections[0]: set either access_token_env/access_token_file or client_id" in message


def test_a_connection_without_credentials_is_rejected(tmp_path: Path) -> None:
    message = one_error(tmp_path, connection='name = "eu"\nshop = "eu.myshopify.com"')
    assert "connections[0]: no Shopify credentials" in message


def test_client_id_needs_a_client_secret_and_vice_versa(tmp_path: Path) -> None:
    base = 'name = "eu"\nshop = "eu.myshopify.com"\n'
    message = one_error(tmp_path, connection=base + 'client_id = "abc"')
    assert "connections[0].client_id: needs client_secret_env or client_secret_file" in message
    message = one_error(
        tmp_path, connection=base + 'client_secret_env = "CS"', env={"CS": "x", **ENV}
    )
    assert "connections[0].client_secret_env: needs client_id beside it" in message


# --- [[connections]] ---------------------------------------------------------------------------


def test_at_least_one_connection_is_required(tmp_path: Path) -> None:
    text = f"[katana]\n{KATANA}\n"
    (message,) = errors(tmp_path, text=text)
    assert "connections: at least one [[connections]] table is required" in message


def test_connection_names_must_be_unique(tmp_path: Path) -> None:
    second = (
        '[[connections]]\nname = "eu"\nshop = "other.myshopify.com"\n'
        f'access_token_env = "EU_TOKEN"\n{LOCATIONS}'
    )
    message = one_error(tmp_path, more=second)
    assert 'connections[1].name: "eu" is already used by connections[0]' in message


def test_connection_name_is_letters_digits_dot_dash_underscore(tmp_path: Path) -> None:
    message = one_error(tmp_path, connection=CONNECTION.replace('"eu"', '"eu store"'))
    assert "connections[0].name: may contain only letters, digits" in message
    assert 'got "eu store"' in message


def test_connection_requires_name_and_shop(tmp_path: Path) -> None:
    found = errors(tmp_path, connection='access_token_env = "EU_TOKEN"')
    assert any("connections[0].name: is required" in e for e in found)
    assert any("connections[0].shop: is required" in e for e in found)


def test_shop_is_a_domain_not_a_url(tmp_path: Path) -> None:
    connection = CONNECTION.replace('"eu.myshopify.com"', '"https://eu.myshopify.com"')
    message = one_error(tmp_path, connection=connection)
    assert "connections[0].shop: must be the shop's domain" in message


def test_api_version_older_than_2026_01_is_rejected_naming_change_from_quantity(
    tmp_path: Path,
) -> None:
    message = one_error(tmp_path, connection=CONNECTION + 'api_version = "2025-10"')
    assert 'connections[0].api_version: must be "2026-01" or newer' in message
    assert "changeFromQuantity" in message
    assert "@idempotent" in message
    assert 'got "2025-10"' in message


@pytest.mark.parametrize("version", ["latest", "2026-1", "2026-10-01", "unstable"])
def test_api_version_must_be_year_dash_month(tmp_path: Path, version: str) -> None:
    message = one_error(tmp_path, connection=CONNECTION + f'api_version = "{version}"')
    assert 'connections[0].api_version: must be a Shopify API version "YYYY-MM"' in message


def test_api_version_must_be_a_quarterly_release(tmp_path: Path) -> None:
    message = one_error(tmp_path, connection=CONNECTION + 'api_version = "2026-02"')
    assert "Shopify releases API versions quarterly" in message


def test_buffer_must_not_be_negative(tmp_path: Path) -> None:
    message = one_error(tmp_path, connection=CONNECTION + "buffer = -1")
    assert "connections[0].buffer: must be at least 0, got -1" in message


@pytest.mark.parametrize("fraction", ["1.5", "-0.1"])
def test_max_drop_fraction_is_between_0_and_1(tmp_path: Path, fraction: str) -> None:
    message = one_error(tmp_path, connection=CONNECTION + f"max_drop_fraction = {fraction}")
    assert f"connections[0].max_drop_fraction: must be between 0 and 1, got {fraction}" in message


def test_max_drop_fraction_may_be_written_as_an_integer(tmp_path: Path) -> None:
    conn = load(tmp_path, connection=CONNECTION + "max_drop_fraction = 1").connections[0]
    assert conn.max_drop_fraction == 1.0


def test_min_drop_count_is_at_least_one(tmp_path: Path) -> None:
    message = one_error(tmp_path, connection=CONNECTION + "min_drop_count = 0")
    assert "connections[0].min_drop_count: must be at least 1, got 0" in message


def test_bulk_read_threshold_is_not_negative(tmp_path: Path) -> None:
    message = one_error(tmp_path, connection=CONNECTION + "bulk_read_threshold = -5")
    assert "connections[0].bulk_read_threshold: must be at least 0, got -5" in message


# --- [[connections.locations]] -----------------------------------------------------------------


def test_katana_integer_is_a_location_id_and_string_a_name_even_if_numeric(
    tmp_path: Path,
) -> None:
    locations = (
        '[[connections.locations]]\nkatana = 12\nshopify = "gid://shopify/Location/1"\n'
        '[[connections.locations]]\nkatana = "12"\nshopify = "gid://shopify/Location/2"\n'
    )
    conn = load(tmp_path, locations=locations).connections[0]
    assert [m.katana for m in conn.locations] == [12, "12"]
    assert isinstance(conn.locations[0].katana, int)
    assert isinstance(conn.locations[1].katana, str)


def test_shopify_location_is_one_gid_or_a_list_of_gids(tmp_path: Path) -> None:
    locations = (
        '[[connections.locations]]\nkatana = "A"\nshopify = "gid://shopify/Location/1"\n'
        '[[connections.locations]]\nkatana = "B"\n'
        'shopify = ["gid://shopify/Location/2", "gid://shopify/Location/3"]\n'
    )
    conn = load(tmp_path, locations=locations).connections[0]
    assert conn.locations == (
        LocationMapping("A", ("gid://shopify/Location/1",)),
        LocationMapping("B", ("gid://shopify/Location/2", "gid://shopify/Location/3")),
    )


def test_shopify_location_must_look_like_a_location_gid(tmp_path: Path) -> None:
    locations = (
        '[[connections.locations]]\nkatana = "A"\n'
        'shopify = ["gid://shopify/Location/1", "gid://shopify/Product/2"]\n'
    )
    message = one_error(tmp_path, locations=locations)
    assert (
        'connections[0].locations[0].shopify[1]: must look like "gid://shopify/Location/N", '
        'got "gid://shopify/Product/2"'
    ) in message


def test_shopify_location_list_must_not_be_empty(tmp_path: Path) -> None:
    message = one_error(tmp_path, locations='[[connections.locations]]\nkatana = "A"\nshopify = []')
    assert "connections[0].locations[0].shopify: must not be an empty list" in message


def test_a_shopify_location_fed_by_two_katana_locations_is_rejected(tmp_path: Path) -> None:
    locations = (
        '[[connections.locations]]\nkatana = "A"\nshopify = "gid://shopify/Location/1"\n'
        '[[connections.locations]]\nkatana = "B"\nshopify = ["gid://shopify/Location/1"]\n'
    )
    message = one_error(tmp_path, locations=locations)
    assert (
        'connections[0].locations[1].shopify: "gid://shopify/Location/1" is already fed by '
        'Katana location "A" (connections[0].locations[0])'
    ) in message


def test_the_same_shopify_location_may_serve_different_connections(tmp_path: Path) -> None:
    second = (
        '[[connections]]\nname = "us"\nshop = "us.myshopify.com"\n'
        f'access_token_env = "EU_TOKEN"\n{LOCATIONS}'
    )
    assert len(load(tmp_path, more=second).connections) == 2


def test_the_same_katana_location_twice_in_a_connection_is_rejected(tmp_path: Path) -> None:
    locations = (
        '[[connections.locations]]\nkatana = 7\nshopify = "gid://shopify/Location/1"\n'
        '[[connections.locations]]\nkatana = 7\nshopify = "gid://shopify/Location/2"\n'
    )
    message = one_error(tmp_path, locations=locations)
    assert "connections[0].locations[1].katana: Katana location 7 is already mapped" in message


def test_each_connection_needs_a_location(tmp_path: Path) -> None:
    message = one_error(tmp_path, locations="")
    assert "connections[0].locations: at least one [[connections.locations]] table" in message


@pytest.mark.parametrize("katana", ["1.5", "true", "0", '""'])
def test_katana_location_is_a_positive_id_or_a_name(tmp_path: Path, katana: str) -> None:
    locations = (
        f'[[connections.locations]]\nkatana = {katana}\nshopify = "gid://shopify/Location/1"'
    )
    message = one_error(tmp_path, locations=locations)
    assert "connections[0].locations[0].katana:" in message


# --- error reporting ---------------------------------------------------------------------------


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    found = errors(
        tmp_path,
        daemon="poll_interval_seconds = 0",
        katana=f"{KATANA}\nrequests_per_minute = 0",
        connection=CONNECTION + "buffer = -1",
    )
    assert len(found) == 3


def test_each_error_names_the_file_the_key_path_and_the_value(tmp_path: Path) -> None:
    second = (
        '[[connections]]\nname = "us"\nshop = "us.myshopify.com"\naccess_token_env = "EU_TOKEN"\n'
        '[[connections.locations]]\nkatana = 3\nshopify = "gid://shopify/Locaton/9"\n'
    )
    (message,) = errors(tmp_path, more=second)
    assert message == (
        f"{tmp_path / 'stocksync.toml'}: connections[1].locations[0].shopify: "
        'must look like "gid://shopify/Location/N", got "gid://shopify/Locaton/9"'
    )


def test_config_error_text_is_every_error_on_its_own_line(tmp_path: Path) -> None:
    path = write(tmp_path, config_text(daemon="poll_interval_seconds = 0\nlog_format = 1"))
    with pytest.raises(ConfigError) as caught:
        load_settings(path, ENV)
    assert str(caught.value) == "\n".join(caught.value.errors)
    assert len(caught.value.errors) == 2


def test_toml_syntax_error_reports_line_and_column(tmp_path: Path) -> None:
    (message,) = errors(tmp_path, text="[daemon]\npoll_interval_seconds = = 3\n")
    assert message.startswith(f"{tmp_path / 'stocksync.toml'}: invalid TOML:")
    assert "line 2" in message
    assert "column" in message


def test_missing_config_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path / "nope.toml", ENV)
    assert caught.value.errors == [
        f"{tmp_path / 'nope.toml'}: cannot read the config file: No such file or directory"
    ]


# --- variant map -------------------------------------------------------------------------------


def write_map(tmp_path: Path, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / "map.csv"
    path.write_text(text, encoding=encoding)
    return path


def map_errors(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_variant_map(write_map(tmp_path, text))
    return caught.value.errors


HEADER = "katana_variant_id,shopify_variant_id\n"


def test_variant_map_takes_gids_and_bare_numbers(tmp_path: Path) -> None:
    path = write_map(tmp_path, HEADER + "1,gid://shopify/ProductVariant/10\n2,20\n")
    assert load_variant_map(path) == {
        1: "gid://shopify/ProductVariant/10",
        2: "gid://shopify/ProductVariant/20",
    }


def test_variant_map_tolerates_bom_whitespace_blank_lines_and_comments(tmp_path: Path) -> None:
    text = "# exported 2026-03-01\n katana_variant_id , shopify_variant_id \n\n# note\n 5 , 50 \n"
    path = write_map(tmp_path, text, encoding="utf-8-sig")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    assert load_variant_map(path) == {5: "gid://shopify/ProductVariant/50"}


def test_variant_map_header_is_required(tmp_path: Path) -> None:
    (message,) = map_errors(tmp_path, "katana,shopify\n1,2\n")
    assert message.startswith(f"{tmp_path / 'map.csv'}:1: the first line must be the header")
    (message,) = map_errors(tmp_path, "# nothing yet\n")
    assert message == f"{tmp_path / 'map.csv'}: empty; expected the header " + HEADER.strip()


def test_variant_map_katana_id_must_be_an_integer(tmp_path: Path) -> None:
    (message,) = map_errors(tmp_path, HEADER + "1,2\nabc,3\n")
    assert message == (
        f'{tmp_path / "map.csv"}:3: katana_variant_id must be a positive integer, got "abc"'
    )


@pytest.mark.parametrize("shopify", ["gid://shopify/Product/1", "x12", "-4", "0"])
def test_variant_map_shopify_id_is_a_variant_gid_or_a_number(tmp_path: Path, shopify: str) -> None:
    (message,) = map_errors(tmp_path, HEADER + f"1,{shopify}\n")
    assert message.startswith(f"{tmp_path / 'map.csv'}:2: shopify_variant_id must be a gid like")


def test_variant_map_katana_id_on_several_rows_feeds_each_shopify_variant(tmp_path: Path) -> None:
    # A single and its packs (issue 18): the rows are the Katana variant's whole mapping.
    path = write_map(tmp_path, HEADER + "1,10\n1,11\n2,20\n")
    assert load_variant_map(path) == {
        1: ("gid://shopify/ProductVariant/10", "gid://shopify/ProductVariant/11"),
        2: "gid://shopify/ProductVariant/20",
    }


def test_variant_map_shopify_variant_fed_by_two_katana_variants_is_rejected(
    tmp_path: Path,
) -> None:
    (message,) = map_errors(tmp_path, HEADER + "1,10\n2,gid://shopify/ProductVariant/10\n")
    assert message.startswith(
        f"{tmp_path / 'map.csv'}:3: Shopify variant gid://shopify/ProductVariant/10 is already "
        "fed by Katana variant 1 (line 2)"
    )


@pytest.mark.parametrize("row", ["1", "1,2,3", "1,2,"])
def test_variant_map_row_must_have_two_columns(tmp_path: Path, row: str) -> None:
    (message,) = map_errors(tmp_path, HEADER + row + "\n")
    assert message.startswith(f"{tmp_path / 'map.csv'}:2: expected 2 columns")


def test_variant_map_reports_every_bad_line(tmp_path: Path) -> None:
    found = map_errors(tmp_path, HEADER + "a,1\n2,b\n3,4,5\n")
    assert [e.split(":")[1] for e in found] == ["2", "3", "4"]


def test_missing_variant_map_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_variant_map(tmp_path / "none.csv")
    assert caught.value.errors == [
        f"{tmp_path / 'none.csv'}: cannot read the variant map: No such file or directory"
    ]


def test_connection_variant_map_problems_are_config_problems(tmp_path: Path) -> None:
    write_map(tmp_path, HEADER + "1,zz\n")
    found = errors(tmp_path, connection=CONNECTION + 'variant_map_file = "map.csv"')
    assert found == [
        f"{tmp_path / 'map.csv'}:2: shopify_variant_id must be a gid like "
        'gid://shopify/ProductVariant/123 or the number 123, got "zz"'
    ]
    found = errors(tmp_path, connection=CONNECTION + 'variant_map_file = "gone.csv"')
    assert found == [
        f"{tmp_path / 'stocksync.toml'}: connections[0].variant_map_file: cannot read "
        f'"{tmp_path / "gone.csv"}": No such file or directory'
    ]


def test_variant_map_is_not_in_the_connection_repr(tmp_path: Path) -> None:
    write_map(tmp_path, HEADER + "1,424242\n")
    conn = load(tmp_path, connection=CONNECTION + 'variant_map_file = "map.csv"').connections[0]
    assert conn.variant_map == {1: "gid://shopify/ProductVariant/424242"}
    assert "424242" not in repr(conn)


# --- the shipped example -----------------------------------------------------------------------


def test_example_config_loads_with_its_environment_variables_set() -> None:
    env = {"KATANA_API_KEY": "k", "SHOPIFY_TOKEN_EU_STORE": "t"}
    settings = load_settings(REPO / "config" / "stocksync.example.toml", env)
    (conn,) = settings.connections
    assert conn.name == "eu-store"
    assert [m.katana for m in conn.locations] == ["Main warehouse", 162]
    assert sum(len(m.shopify) for m in conn.locations) == 3
    assert conn.variant_map == {
        31415926: (
            "gid://shopify/ProductVariant/44001234567890",
            "gid://shopify/ProductVariant/44001234567892",
        ),
        27182818: "gid://shopify/ProductVariant/44001234567891",
    }
