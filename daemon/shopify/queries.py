"""The GraphQL documents stocksync sends to Shopify, and what each is expected to cost.

Costs follow Shopify's published calculation (an object costs 1, a scalar 0, a connection 2 plus
`first` times its node's cost, a mutation about 10). They are what the pacer reserves before a
send; Shopify's answer then says the true figure, so a small error here only costs a wait.
"""

from __future__ import annotations

# Shopify's ceiling on a single query's requested cost (larger ones fail with MAX_COST_EXCEEDED).
MAX_QUERY_COST = 1000
# Level reads are chunked to stay this far under the ceiling, in case Shopify counts a field
# slightly differently from the estimate below.
LEVELS_COST_BUDGET = 900
# Shopify's page size ceiling, and the most ids `nodes(ids:)` accepts.
PAGE_SIZE = 250

# Deactivated locations are listed too (Shopify leaves them out by default), so that a mapped
# one is reported as deactivated rather than as missing.
LOCATIONS = """
query Locations($after: String) {
  locations(first: 250, after: $after, includeInactive: true) {
    nodes { id name isActive }
    pageInfo { hasNextPage endCursor }
  }
}
"""
# connection 2 + 250 locations + pageInfo
LOCATIONS_COST = 2 + PAGE_SIZE * 1 + 1

VARIANTS = """
query Variants($after: String) {
  productVariants(first: 250, after: $after) {
    nodes { id sku inventoryItem { id tracked } }
    pageInfo { hasNextPage endCursor }
  }
}
"""
# connection 2 + 250 x (variant + inventory item) + pageInfo
VARIANTS_COST = 2 + PAGE_SIZE * 2 + 1

# One location per query: `inventoryLevel(locationId:)` returns just the level asked for, so a
# level costs 3 points (item, level, quantity) however many other locations stock the item,
# where paging `inventoryLevels` cost the item's connection and every level it returned.
AVAILABLE_LEVELS = """
query AvailableLevels($ids: [ID!]!, $location: ID!) {
  nodes(ids: $ids) {
    ... on InventoryItem {
      id
      inventoryLevel(locationId: $location) {
        quantities(names: ["available"]) { name quantity }
      }
    }
  }
}
"""


def available_levels_cost(items: int) -> int:
    """Requested cost of AVAILABLE_LEVELS for `items` ids: the item, its level, one quantity."""
    return items * (1 + 1 + 1)


SET_QUANTITIES = """
mutation Set($input: InventorySetQuantitiesInput!, $key: String!) {
  inventorySetQuantities(input: $input) @idempotent(key: $key) {
    inventoryAdjustmentGroup {
      id
      changes(quantityNames: ["available"]) { name delta quantityAfterChange }
    }
    userErrors { code field message }
  }
}
"""
SET_QUANTITIES_COST = 10

ACTIVATE = """
mutation Activate($inventoryItemId: ID!, $locationId: ID!, $available: Int, $key: String!) {
  inventoryActivate(
    inventoryItemId: $inventoryItemId, locationId: $locationId, available: $available
  ) @idempotent(key: $key) {
    inventoryLevel { id }
    userErrors { field message }
  }
}
"""
ACTIVATE_COST = 10

# -- large shops: bulk operations ---------------------------------------------------------------

VARIANTS_COUNT = """
query VariantsCount($limit: Int) {
  productVariantsCount(limit: $limit) { count precision }
}
"""
# one object
VARIANTS_COUNT_COST = 1

# Bulk queries take no variables and read connections whole (no `first`). Every line of the
# result is one node; a nested connection's nodes carry `__parentId`, hence the item's `id`.
BULK_VARIANTS = """
{
  productVariants {
    edges { node { id sku inventoryItem { id tracked } } }
  }
}
"""

BULK_AVAILABLE_LEVELS = """
{
  inventoryItems {
    edges {
      node {
        id
        inventoryLevels {
          edges {
            node {
              location { id }
              quantities(names: ["available"]) { name quantity }
            }
          }
        }
      }
    }
  }
}
"""

BULK_RUN = """
mutation BulkRun($query: String!) {
  bulkOperationRunQuery(query: $query) {
    bulkOperation { id status }
    userErrors { code field message }
  }
}
"""
# A mutation costs 10; the bulk query it starts is not charged to the bucket at all.
BULK_RUN_COST = 10

BULK_OPERATION = """
query BulkOperation($id: ID!) {
  bulkOperation(id: $id) { id status errorCode objectCount url }
}
"""
# one object
BULK_OPERATION_COST = 1
