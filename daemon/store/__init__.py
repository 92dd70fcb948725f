"""The daemon's durable state, in one SQLite file.

Cursors and the dirty set form an outbox (a cursor advances only in the transaction that records
the variants it made dirty); the snapshot says what Shopify was last told; the audit log, problems,
holds, runs and the Katana catalogue cache complete it. A crash or `kill -9` at any point loses
nothing: every method that writes commits one transaction before it returns.

`StateStore` (state.py) is the one API, made of one part per group of tables: `outbox.py`
(cursors, dirty marks, row variants, full-sync markers), `snapshot.py` (the snapshot, push
requests, read-backs, parked levels, the audit log), `records.py` (problems, holds, runs),
`catalogue.py` (the Katana catalogue cache). `base.py` holds what the parts share (the connection,
its lock, the clock); `schema.py` the file itself (created private, refused when not ours or
damaged, upgraded, copied); `migrations.py` the schema's history.
"""

from daemon.store.migrations import MIGRATIONS, SCHEMA_VERSION
from daemon.store.outbox import DirtyMark
from daemon.store.records import RunRecord
from daemon.store.schema import APPLICATION_ID, StateError
from daemon.store.snapshot import AuditEntry, Parked, PendingRequest
from daemon.store.state import StateStore

__all__ = [
    "APPLICATION_ID",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "AuditEntry",
    "DirtyMark",
    "Parked",
    "PendingRequest",
    "RunRecord",
    "StateError",
    "StateStore",
]
