"""The merchant's status page: `GET /`, `/status` and `/status.json` (read-only)."""
