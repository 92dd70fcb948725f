"""stocksync: a one-way Katana MRP -> Shopify inventory sync daemon."""

__version__ = "0.1.0"
