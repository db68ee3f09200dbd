"""The bench's baseline: which psql it runs (the real binary, not Debian's Perl wrapper), and
``psql -f`` once per file, timed, as the spec's manual path applies the migrations."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from leaddb import platforms, runner
from leaddb.errors import LeadDbError
from leaddb.migrations import Migration


def psql_program() -> str | None:
    """The psql the baseline runs: the real binary in ``pg_config --bindir`` when there is one,
    else the first on ``PATH``. On Debian and Ubuntu ``psql`` on PATH is ``pg_wrapper``, a Perl
    script that picks a version and then runs that binary (~50 ms more per start on the
    2-core CI machine, benchmarks/README.md): the binary is the fair baseline. ``None`` when
    neither is there."""
    bindir = platforms.pg_config_bindir()
    if bindir is not None:
        binary = bindir / platforms.executable("psql")
        if binary.is_file() and os.access(binary, os.X_OK):
            return str(binary)
    return shutil.which("psql")


def psql_note(psql: str) -> str:
    """Which psql the baseline is, and what ``psql`` on PATH is when that differs."""
    on_path = shutil.which("psql")
    if on_path is None or Path(on_path).resolve() == Path(psql).resolve():
        return f"psql baseline: {psql}"
    return f"psql baseline: {psql} (the binary; psql on PATH is {on_path} -> {Path(on_path).resolve()})"


def psql_per_file(conninfo: str, migrations: Sequence[Migration], psql: str | None = None) -> float:
    """``psql -X -v ON_ERROR_STOP=1 -f FILE`` once per file, as the manual path does (in a
    session with the runner's pinned settings, as ours: the same schema, the same work)."""
    psql = psql or psql_program()
    if psql is None:
        raise FileNotFoundError("psql")
    params = conninfo_to_dict(runner.session_conninfo(conninfo))
    env = {**os.environ}
    if params.get("password"):  # never on the command line, where `ps` shows it
        env["PGPASSWORD"] = str(params.pop("password"))
    target = make_conninfo(**params)
    started = time.perf_counter()
    for m in migrations:
        done = subprocess.run(
            [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", target, "-f", str(m.path)],
            capture_output=True,
            text=True,
            env=env,
        )
        if done.returncode != 0:
            raise LeadDbError(f"the psql -f baseline failed on {m.name}:\n  {done.stderr.strip()}")
    return time.perf_counter() - started
