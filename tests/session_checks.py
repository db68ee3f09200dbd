"""What the tests of waits and stops check on the server afterwards (plain functions)."""

from __future__ import annotations

import psycopg

from leaddb import runner


def apply_lock_is_free(conninfo: str) -> bool:
    """Whether another apply of the database could take the apply lock now (taken and given back)."""
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
        taken = conn.execute("SELECT pg_try_advisory_lock(%s)", (runner.ADVISORY_LOCK_KEY,)).fetchone()[0]
        if taken:
            conn.execute(runner.UNLOCK)
        return taken
