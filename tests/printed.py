"""For tests that add or change a migration file in a copy of the project: the spec prints every
file (rule "printed in the spec"), so the copy's spec gets the file's block too; and a gate, a
migration that holds its transaction open until the test releases it, within the spec's rules.

Plain functions and a class (the fixtures are in conftest.py and the test modules)."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
from psycopg import sql

SPEC = "Technical-Architecture-Specification.md"
MIGRATIONS = "api/db/migrations"


def print_block(root: Path, name: str, content: str | bytes) -> None:
    """Print the block of ``api/db/migrations/<name>`` in ``root``'s spec (at its end, or in place
    of the one printed already): ``content`` as the
    rule reads it (UTF-8, LF). A block names its file on its first line and ends in a newline,
    so a file without that header, or without a last newline, still differs from it there; a
    file that cannot be decoded, or holds nothing, gets no block (its own rule refuses it)."""
    try:
        text = content.decode("utf-8-sig") if isinstance(content, bytes) else content
    except UnicodeDecodeError:
        return
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        return
    header = f"-- migration: {MIGRATIONS}/{name}"
    if text.partition("\n")[0] != header:
        text = header + "\n" + text.partition("\n")[2]
    if not text.endswith("\n"):
        text += "\n"
    spec = root / SPEC
    printed = spec.read_text(encoding="utf-8")
    opening = f"```sql\n{header}\n"
    if opening in printed:  # the file printed already: its block is replaced
        start = printed.index(opening) + len("```sql\n")
        printed = printed[:start] + text + printed[printed.index("```\n", start) :]
    else:
        printed += f"\n`{name}`:\n\n```sql\n{text}```\n"
    spec.write_text(printed, encoding="utf-8", newline="\n")


def write_printed(root: Path, name: str, content: str | bytes) -> Path:
    """Write migration file ``name`` and print it in the spec, as a change to the schema is made."""
    path = root / MIGRATIONS / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    print_block(root, name, content)
    return path


def remove_printed(root: Path, name: str) -> None:
    """Remove migration file ``name`` and its block in the spec."""
    path = root / MIGRATIONS / name
    text = path.read_text(encoding="utf-8")
    spec = root / SPEC
    printed = spec.read_text(encoding="utf-8")
    block = f"\n`{name}`:\n\n```sql\n{text}```\n"
    assert printed.count(block) == 1, f"the spec does not print {name} as print_block does"
    spec.write_text(printed.replace(block, ""), encoding="utf-8", newline="\n")
    path.unlink()


def edit_printed(root: Path, name: str, old: str, new: str) -> None:
    """Replace ``old`` by ``new`` in migration ``name`` and in its block in the spec alike."""
    path = root / MIGRATIONS / name
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    spec = root / SPEC
    printed = spec.read_text(encoding="utf-8")
    assert printed.count(text) == 1, f"the spec does not print {name} verbatim once"
    path.write_text(text.replace(old, new), encoding="utf-8", newline="\n")
    spec.write_text(printed.replace(text, text.replace(old, new)), encoding="utf-8", newline="\n")


class Gate:
    """A migration's DO block that holds its file's transaction open until the test releases it,
    within the spec's rules (no server function, no dynamic SQL). It shows in pg_stat_activity
    (``entered``); the test then holds the ``postgres`` database's row of pg_database in a
    transaction of its own and creates role ``name`` (``hold``); the block, which polls the
    catalog for that role for a few milliseconds, then asks for the same row: a lock wait, until
    the test releases the row (``release``) or its session ends. (pg_stat_activity cannot be the
    signal: a transaction sees one snapshot of it.)"""

    WAIT = 60  # seconds: the bound of every polling loop here

    def __init__(self, name: str) -> None:
        self.name = name
        self.holder: psycopg.Connection | None = None

    def sql(self) -> str:
        # the name is the test's own (leaddb_gate_<hex>): nothing from outside reaches this text
        return (
            "DO $gate$\nDECLARE\n"  # noqa: S608
            "    deadline timestamptz := clock_timestamp() + interval '60 seconds';\n"
            f"BEGIN\n    -- gate {self.name}\n    LOOP\n"
            "        EXIT WHEN clock_timestamp() > deadline\n"
            f"            OR EXISTS (SELECT FROM pg_roles WHERE rolname = '{self.name}');\n    END LOOP;\n"
            "    PERFORM FROM pg_database WHERE datname = 'postgres' FOR SHARE;\nEND\n$gate$;\n"
        )

    def entered(self, conninfo: str) -> bool:
        """Whether a session runs the gate's block (``conninfo``: any database of the server)."""
        try:
            with psycopg.connect(conninfo, connect_timeout=5) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
                    "AND state = 'active' AND query LIKE %s",
                    (f"%-- gate {self.name}\n%",),
                ).fetchone()
        except psycopg.OperationalError:  # the server is not up yet (a reset starting it)
            return False
        return row[0] > 0

    def signal(self, conninfo: str) -> None:
        """Create role ``name``: the gate's loop ends (and waits for the row, if the test holds it).
        Durably (a throwaway cluster may commit asynchronously): a server killed afterwards still
        has the role, so the gate passes at once when the file runs again."""
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
            conn.execute("SET synchronous_commit = on")
            if conn.execute("SELECT FROM pg_roles WHERE rolname = %s", (self.name,)).fetchone() is None:
                conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(self.name)))

    def hold(self, conninfo: str, *, busy: int = 0) -> None:
        """Hold the row the gate will wait for, then let the gate go on to wait for it.

        ``busy``: seconds the holding session then spends computing. A test that kills the
        postmaster needs it: an idle session notices the postmaster's death and exits (its
        lock freed, the gate's migration might go on before it notices the death too), a busy
        one notices only when it is idle again; the gate's migration, waiting on the lock,
        notices at once."""
        self.holder = psycopg.connect(conninfo, connect_timeout=5)
        self.holder.execute("SELECT FROM pg_database WHERE datname = 'postgres' FOR UPDATE")
        self.signal(conninfo)
        if busy:
            self.holder.execute(f"SET statement_timeout = '{int(busy)}s'")
            self.holder.pgconn.send_query(b"SELECT count(*) FROM generate_series(1, 1000000000000)")

    def wait_entered(self, conninfo, process, *, busy: int = 0) -> None:
        """Until the gated migration runs (``conninfo``: a function giving the server's, or None
        while there is none, asked again each time: a reset starts a new server), then hold it
        there."""
        deadline = time.monotonic() + self.WAIT
        while (info := conninfo()) is None or not self.entered(info):
            if process.poll() is not None:
                out, err = process.communicate()
                raise AssertionError(
                    f"exited ({process.returncode}) before the gated migration ran:\n{out}\n{err}"
                )
            assert time.monotonic() < deadline, "the gated migration never started"
            time.sleep(0.05)
        self.hold(conninfo(), busy=busy)

    def release(self, conninfo: str | None = None) -> None:
        """Let the gate go: end the holding transaction; or, when the test held nothing, signal
        (``conninfo``: the server's) so the gate's loop ends at once rather than after 60 s."""
        if self.holder is not None:
            self.holder.close()
            self.holder = None
        elif conninfo is not None:
            self.signal(conninfo)

    def drop(self, conninfo: str) -> None:
        """Remove the role the gate made (the server's own cluster goes with it otherwise)."""
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(self.name)))
