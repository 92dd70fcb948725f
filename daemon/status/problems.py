"""The status page's problem vocabulary: the groups problems are shown in, in order, and what
each problem kind means in plain language.
"""

from __future__ import annotations

# Problem groups, in the order the page shows them, with their headings.
GROUPS: dict[str, str] = {
    "rejected": "Rejected by Shopify",
    "not_pushed": "Not pushed: Katana's figures cannot be used",
    "unmapped": "Not in Shopify (unmapped)",
    "shadowed": "Duplicate SKU in Katana (shadowed)",
    "untracked": "Inventory not tracked in Shopify",
    "config": "Variant map entries ignored",
    "other": "Other",
}
# Problems that come from the mapping table itself (domain/mapping.py MappingTable.problems).
_MAPPING_KINDS = {"shadowed_sku", "untracked", "unknown_map_entry"}
_NOT_PUSHED = {"stock_unreadable", "quantity_invalid", "quantity_too_high", "quantity_too_low"}
# Plain-language reasons; a Shopify code not listed gets a generic one naming the code.
REASONS: dict[str, str] = {
    "ITEM_NOT_STOCKED_AT_LOCATION": (
        "Shopify does not stock this item at this location. Stock it there in Shopify (or set "
        "activate_missing = true); stocksync tries again when the quantity changes."
    ),
    "NON_MUTABLE_INVENTORY_ITEM": (
        "Shopify does not let anyone set this item's quantity (for example, a fulfilment "
        "service manages it)."
    ),
    "INVALID_INVENTORY_ITEM": "Shopify no longer knows this inventory item (deleted in Shopify?).",
    "INVALID_LOCATION": "Shopify no longer knows this location (deleted or deactivated?).",
    "stock_unreadable": (
        "Katana sent stock figures for it that cannot be read. It is not pushed (Shopify keeps "
        "its last value) and is read again every cycle."
    ),
    "quantity_invalid": "A Katana quantity for it is not a number, so it is not pushed.",
    "quantity_too_high": "The quantity worked out is above Shopify's maximum (1,000,000,000).",
    "quantity_too_low": "The quantity worked out is below Shopify's minimum.",
    "shadowed_sku": (
        "Another Katana variant has the same SKU and was created more recently: that one is "
        "synced, this one is not."
    ),
    "untracked": (
        "Shopify does not track this variant's inventory ('Track quantity' is off), so it is "
        "skipped."
    ),
    "unknown_map_entry": "The variant map file names a variant that does not exist.",
    "unmapped": "No Shopify variant has this SKU, so its stock is not sent anywhere.",
    "unmapped_no_sku": "It has no SKU and the variant map does not name it, so it is not synced.",
}


def group_of(kind: str) -> str:
    """The page's group for a problem kind."""
    if kind in _NOT_PUSHED:
        return "not_pushed"
    if kind == "shadowed_sku":
        return "shadowed"
    if kind in ("untracked", "unmapped"):
        return kind
    if kind == "unknown_map_entry":
        return "config"
    if kind == "rejected" or (kind.isupper() and kind.replace("_", "").isalnum()):
        return "rejected"  # Shopify's userError codes are UPPER_SNAKE_CASE
    return "other"


def reason_for(kind: str) -> str:
    """What a problem kind means, in plain language."""
    if kind in REASONS:
        return REASONS[kind]
    if group_of(kind) == "rejected":
        return f"Shopify refused the quantity ({kind})."
    return "See the detail."
