"""Where Rollgate keeps its own bookkeeping in a target database.

Rails, golang-migrate, Flyway's users and others already own a
``public.schema_migrations``; Rollgate's history lives in its own schema so
the two never collide, and catalog comparisons leave that schema out: it is
Rollgate's, not the project's.
"""

from __future__ import annotations

HISTORY_SCHEMA = "rollgate"
HISTORY_TABLE = "schema_migrations"
HISTORY_QUALIFIED = f"{HISTORY_SCHEMA}.{HISTORY_TABLE}"
