"""Keeping Shopify in step with Katana, one cycle at a time, in modules that follow the data.

`sources` (Katana deltas → the outbox) · `catalogue` (Katana catalogue, Shopify catalogues,
mappings) · `recovery` (pushes left open) · `levels` (desired levels → plan → valve → push, the one
push entry point) · `valve` (safety-valve holds) · `pusher` (recorded requests to Shopify) ·
`engine` (one cycle, and the parts put together) · `reconcile` (nightly and on demand) ·
`report` (what a cycle did) · `context` (the settings and clients in force).
"""
