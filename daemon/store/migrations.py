"""The state database's schema, as the history of its migrations.

Every table of the state file is created here; `schema.py` applies the migrations a file has not
had yet and checks its tables and columns against them.
"""

from __future__ import annotations

from typing import Final

# Each migration is applied in one transaction that also sets `PRAGMA user_version` to its
# position (1-based). Append new migrations; never edit a released one.
MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        """CREATE TABLE cursors (
            source TEXT PRIMARY KEY CHECK (source <> ''),
            at TEXT NOT NULL
        ) WITHOUT ROWID""",
        # A persistent counter rather than MAX(dirty.seq): once the dirty set empties, MAX would
        # restart and a late clear_dirty holding an old seq could delete a newer mark.
        """CREATE TABLE dirty_sequence (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            last_seq INTEGER NOT NULL
        )""",
        "INSERT INTO dirty_sequence (id, last_seq) VALUES (1, 0)",
        """CREATE TABLE dirty (
            connection TEXT NOT NULL,
            variant_id INTEGER NOT NULL,
            changed_at TEXT NOT NULL,
            seq INTEGER NOT NULL,
            PRIMARY KEY (connection, variant_id)
        ) WITHOUT ROWID""",
        """CREATE TABLE connections (
            name TEXT PRIMARY KEY,
            synced_at TEXT NOT NULL
        ) WITHOUT ROWID""",
        """CREATE TABLE snapshot (
            connection TEXT NOT NULL,
            inventory_item_id TEXT NOT NULL,
            location_id TEXT NOT NULL,
            quantity INTEGER,
            in_flight INTEGER NOT NULL CHECK (in_flight IN (0, 1)),
            updated_at TEXT NOT NULL,
            PRIMARY KEY (connection, inventory_item_id, location_id)
        ) WITHOUT ROWID""",
        """CREATE TABLE audit (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            run_id TEXT NOT NULL,
            connection TEXT NOT NULL,
            sku TEXT,
            katana_variant_id INTEGER NOT NULL,
            inventory_item_id TEXT NOT NULL,
            location_id TEXT NOT NULL,
            from_quantity INTEGER,
            to_quantity INTEGER NOT NULL,
            outcome TEXT NOT NULL
        )""",
        "CREATE INDEX audit_by_sku ON audit (sku, id)",
        """CREATE TABLE problems (
            connection TEXT NOT NULL,
            subject TEXT NOT NULL,
            kind TEXT NOT NULL,
            detail TEXT NOT NULL,
            first_seen TEXT NOT NULL,
            last_seen TEXT NOT NULL,
            PRIMARY KEY (connection, subject)
        ) WITHOUT ROWID""",
        """CREATE TABLE holds (
            connection TEXT PRIMARY KEY,
            reason TEXT NOT NULL,
            since TEXT NOT NULL
        ) WITHOUT ROWID""",
        # AUTOINCREMENT: run ids appear in logs and audit rows, so they are never reused.
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL,
            connection TEXT,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            ok INTEGER CHECK (ok IN (0, 1)),
            drift INTEGER,
            detail TEXT NOT NULL DEFAULT ''
        )""",
        """CREATE TABLE catalogue_variants (
            id INTEGER PRIMARY KEY,
            sku TEXT,
            product_id INTEGER,
            material_id INTEGER,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            deleted_at TEXT
        )""",
        """CREATE TABLE catalogue_items (
            kind TEXT NOT NULL CHECK (kind IN ('product', 'material')),
            id INTEGER NOT NULL,
            is_auto_assembly INTEGER NOT NULL CHECK (is_auto_assembly IN (0, 1)),
            archived INTEGER NOT NULL CHECK (archived IN (0, 1)),
            updated_at TEXT NOT NULL,
            PRIMARY KEY (kind, id)
        ) WITHOUT ROWID""",
        # Quantities as decimal text: exact, never a float.
        """CREATE TABLE catalogue_bom (
            id TEXT PRIMARY KEY,
            product_variant_id INTEGER NOT NULL,
            ingredient_variant_id INTEGER NOT NULL,
            quantity TEXT NOT NULL,
            updated_at TEXT
        ) WITHOUT ROWID""",
    ),
    (
        # A push request whose answer is not recorded yet, exactly as last sent (PRODUCT.md §3):
        # after a crash or a lost answer it is re-sent unchanged under its key. `lost` says an
        # attempt's answer never arrived, so Shopify may still apply it later.
        """CREATE TABLE push_requests (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            connection TEXT NOT NULL,
            idempotency_key TEXT NOT NULL,
            variables TEXT NOT NULL,
            pushes TEXT NOT NULL,
            sent_at TEXT NOT NULL,
            lost INTEGER NOT NULL DEFAULT 0 CHECK (lost IN (0, 1))
        )""",
        # The request whose answer settles an in-flight level (never a newer one's answer), and
        # when a level whose request was lost is read back from Shopify.
        "ALTER TABLE snapshot ADD COLUMN request_id INTEGER",
        "ALTER TABLE snapshot ADD COLUMN verify_after TEXT",
        # Levels Shopify rejected, tried again after a growing pause or when Katana's value moves.
        """CREATE TABLE parked (
            connection TEXT NOT NULL,
            inventory_item_id TEXT NOT NULL,
            location_id TEXT NOT NULL,
            katana_variant_id INTEGER NOT NULL,
            quantity INTEGER NOT NULL,
            attempts INTEGER NOT NULL,
            retry_at TEXT NOT NULL,
            PRIMARY KEY (connection, inventory_item_id, location_id)
        ) WITHOUT ROWID""",
    ),
    (
        # The last-known variant of each document row seen through a row source: Katana lets a
        # row be re-pointed to another variant, and the old one must be re-read too.
        """CREATE TABLE row_variants (
            source TEXT NOT NULL,
            row_id TEXT NOT NULL,
            variant_id INTEGER NOT NULL,
            PRIMARY KEY (source, row_id)
        ) WITHOUT ROWID""",
        # Katana allows a BOM row without a quantity: the column becomes nullable (SQLite
        # changes a constraint only by rebuilding the table).
        """CREATE TABLE catalogue_bom_nullable (
            id TEXT PRIMARY KEY,
            product_variant_id INTEGER NOT NULL,
            ingredient_variant_id INTEGER NOT NULL,
            quantity TEXT,
            updated_at TEXT
        ) WITHOUT ROWID""",
        """INSERT INTO catalogue_bom_nullable
            SELECT id, product_variant_id, ingredient_variant_id, quantity, updated_at
            FROM catalogue_bom""",
        "DROP TABLE catalogue_bom",
        "ALTER TABLE catalogue_bom_nullable RENAME TO catalogue_bom",
    ),
    (
        # Katana's category_name of each product and material: sync filters match it (issue 18).
        "ALTER TABLE catalogue_items ADD COLUMN category TEXT",
        # The items cached before were stored without it: with no items cursor the next cycle
        # reads every product and material again (DeltaSources.collect); their variants' stock
        # is not re-read for it.
        "DELETE FROM cursors WHERE source = 'items'",
    ),
)
SCHEMA_VERSION: Final = len(MIGRATIONS)
