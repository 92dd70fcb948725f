"""The variant map CSV (katana_variant_id, shopify_variant_id, then optionally units_per_pack and
buffer): `load_variant_map`, `read_variant_map` and the parser that reports every bad line."""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from daemon.config.settings import ConfigError
from daemon.config.table import _DIGITS, _reason, _show
from daemon.domain.controls import TargetRule

VARIANT_MAP_HEADER = ("katana_variant_id", "shopify_variant_id")
# Optional variant map columns, after the two above in any order (issue 18).
VARIANT_MAP_OPTIONAL = ("units_per_pack", "buffer")
# The largest pack size and per-variant buffer accepted (Shopify's own quantity limit).
MAX_PACK_OR_BUFFER = 1_000_000_000


_VARIANT_GID = re.compile(r"gid://shopify/ProductVariant/([0-9]+)\Z")


def load_variant_map(path: Path) -> dict[int, str | tuple[str, ...]]:
    """Read a variant map CSV (Katana variant id -> Shopify variant gid, or a tuple of them when
    it has several rows); ConfigError per line."""
    return read_variant_map(path).entries


@dataclass(frozen=True)
class VariantMapFile:
    """A variant map as read: its entries and the rows' own pack sizes and buffers."""

    entries: dict[int, str | tuple[str, ...]]
    rules: dict[str, TargetRule]


def read_variant_map(path: Path) -> VariantMapFile:
    """Read a variant map CSV with its optional columns; ConfigError listing every bad line."""
    try:
        entries, rules, errors = _parse_variant_map(path)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the variant map: {_reason(exc)}"]) from None
    if errors:
        raise ConfigError(errors)
    return VariantMapFile(entries, rules)


def _parse_variant_map(
    path: Path,
) -> tuple[dict[int, str | tuple[str, ...]], dict[str, TargetRule], list[str]]:
    """Entries, the rows' own rules and every problem of a variant map CSV; OSError when it
    cannot be read.

    Columns: katana_variant_id, shopify_variant_id, then optionally units_per_pack and buffer
    (in either order). A Katana variant may have several rows (a single and its packs); a
    Shopify variant only one: it is fed by one Katana variant.
    """
    try:
        text = path.read_bytes().decode("utf-8-sig")  # -sig: tolerate a BOM (Excel writes one)
    except UnicodeDecodeError:
        return {}, {}, [f"{path}: not UTF-8 text"]
    targets: dict[int, list[str]] = {}
    rules: dict[str, TargetRule] = {}
    errors: list[str] = []
    # Shopify variant gid -> (the Katana variant feeding it, its line)
    shopify_line: dict[str, tuple[int, int]] = {}
    header: tuple[str, ...] | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        content = line.strip()
        if not content or content.startswith("#"):
            continue
        where = f"{path}:{number}"
        try:
            cells = [cell.strip() for cell in next(csv.reader([line], strict=True))]
        except csv.Error as exc:
            errors.append(f"{where}: not valid CSV ({exc}): {_show(content)}")
            continue
        if header is None:
            header = _variant_map_header(where, cells, content, errors)
            continue
        if len(cells) != len(header):
            errors.append(
                f"{where}: expected {len(header)} columns ({','.join(header)}), "
                f"got {len(cells)}: {_show(content)}"
            )
            continue
        row = dict(zip(header, cells, strict=True))
        katana = _katana_variant_id(row["katana_variant_id"])
        shopify = _shopify_variant_gid(row["shopify_variant_id"])
        if katana is None:
            errors.append(
                f"{where}: katana_variant_id must be a positive integer, "
                f"got {_show(row['katana_variant_id'])}"
            )
        if shopify is None:
            errors.append(
                f"{where}: shopify_variant_id must be a gid like "
                f"gid://shopify/ProductVariant/123 or the number 123, "
                f"got {_show(row['shopify_variant_id'])}"
            )
        units = _map_number(where, row, "units_per_pack", 1, errors)
        buffer = _map_number(where, row, "buffer", 0, errors)
        if katana is None or shopify is None or units == _BAD or buffer == _BAD:
            continue
        if shopify in shopify_line:
            other, other_line = shopify_line[shopify]
            errors.append(
                f"{where}: Shopify variant {shopify} is already fed by Katana variant {other} "
                f"(line {other_line}); a Shopify variant may be fed by only one Katana variant"
            )
            continue
        shopify_line[shopify] = (katana, number)
        targets.setdefault(katana, []).append(shopify)
        rule = TargetRule(
            units_per_pack=1 if units is None else units,
            buffer=buffer,
        )
        if rule != TargetRule():
            rules[shopify] = rule
    if header is None:
        errors.append(f"{path}: empty; expected the header {','.join(VARIANT_MAP_HEADER)}")
    entries: dict[int, str | tuple[str, ...]] = {
        katana: gids[0] if len(gids) == 1 else tuple(gids) for katana, gids in targets.items()
    }
    return entries, rules, errors


# A bad optional cell (reported); None is an empty one.
_BAD: Final = -1


def _variant_map_header(
    where: str, cells: list[str], content: str, errors: list[str]
) -> tuple[str, ...]:
    """The columns of a variant map (the two required ones when the line is no header)."""
    required = VARIANT_MAP_HEADER
    expected = (
        f"expected {','.join(required)} then optionally {' and '.join(VARIANT_MAP_OPTIONAL)}, "
        f"got {_show(content)}"
    )
    if tuple(cells[: len(required)]) != required:
        errors.append(f"{where}: the first line must be the header: {expected}")
        return required
    extra = cells[len(required) :]
    for column in extra:
        if column not in VARIANT_MAP_OPTIONAL:
            errors.append(f"{where}: unknown column {_show(column)}: {expected}")
            break
        if extra.count(column) > 1:
            errors.append(f"{where}: column {_show(column)} is listed twice: {expected}")
            break
    # The rows are still read with this header, so each bad line is reported too.
    return tuple(cells)


def _map_number(
    where: str, row: Mapping[str, str], column: str, minimum: int, errors: list[str]
) -> int | None:
    """An optional whole-number cell: None when absent or empty, _BAD (reported) when wrong."""
    text = row.get(column, "")
    if not text:
        return None
    if not _DIGITS.match(text) or not minimum <= int(text) <= MAX_PACK_OR_BUFFER:
        what = "Katana units held back" if column == "buffer" else "Katana units in one pack"
        errors.append(
            f"{where}: {column} must be a whole number of {what} between {minimum} and "
            f"{MAX_PACK_OR_BUFFER:,}, or empty, got {_show(text)}"
        )
        return _BAD
    return int(text)


def _katana_variant_id(text: str) -> int | None:
    if not _DIGITS.match(text) or int(text) < 1:
        return None
    return int(text)


def _shopify_variant_gid(text: str) -> str | None:
    match = _VARIANT_GID.match(text)
    number = match.group(1) if match else text
    if not _DIGITS.match(number) or int(number) < 1:
        return None
    return f"gid://shopify/ProductVariant/{int(number)}"
