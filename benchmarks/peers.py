"""Side by side with the peers: our whole commands against what a user could run instead.

    python benchmarks/peers.py [--runs N] [--only GROUP[,GROUP]] [--json FILE] [--no-warm-up]
    nox -s peers -- --runs 5

One run, interleaved (round 1: every contender once, round 2: every contender once, ...),
on one local PostgreSQL 15 cluster made by the project's own local backend in a state
directory of this run's own (``LEADDB_STATE_DIR``), so every contender meets the same
server settings. Every apply starts from an empty database created just before it
(untimed). Groups (``--only``):

- ``floor``: ``python -c pass``, ``python -c "import invoke, psycopg"`` (the floor of any
  Python task here), ``python -c "import tasks"``;
- ``apply``: ``invoke db.apply`` as a subprocess (whole) and ``workflow.apply`` timed in
  this process (in-process); ``psql -f`` per file with the real binary
  (``pg_config --bindir``) and with ``psql`` on PATH (Debian: the Perl ``pg_wrapper``);
  dbmate (from the npm registry into a cache directory; files adapted by this script);
- ``reapply``: ``invoke db.reapply``; ``psql -f`` per file a second time;
- ``drift``: ``invoke db.drift``; migra (PyPI, its own venv) against a prebuilt reference;
- ``fast``: ``invoke db.reset --fast``; ``dropdb --force`` + ``createdb -T`` the same template;
- ``reset``: ``invoke db.reset --backend local``; a bash floor (initdb with our arguments,
  ``pg_ctl -w start``, createdb, psql per file) on the same storage;
- ``scale``: 1,000 generated files (each printed in the generated spec): ``invoke db.apply``
  on a generated project, dbmate, one psql session (``-f`` per file), psql per file;
- ``big`` (not run unless named): ``invoke db.apply`` on 9,999 generated files, one psql session;
- ``imports``: ``python -X importtime -c "import tasks"`` and the floor, top imports;
- ``docker``: where a Docker engine answers, the storage its data root is on.

Prints medians, run counts, min/max, ratios (ours / peer), the load average at start and
end, and the issue's goals (reported, never exit-coded); writes JSON, Markdown and a PNG
to ``benchmarks/results/``, each naming the run (``run_name``: date, commit, rounds, load);
``--readme`` writes its tables between the markers of README.md and benchmarks/README.md.
Compare ratios within one run: the machine is shared.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import os
import platform
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlencode

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # measure this checkout's code, installed or not
    sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from psycopg.conninfo import conninfo_to_dict, make_conninfo  # noqa: E402

from leaddb import (  # noqa: E402
    bench,
    fast,
    generated,
    janitor,
    migrations,
    permissions,
    platforms,
    spec,
    verdict,
    views,
    workflow,
)
from leaddb.backends.cluster import SERVER_SETTINGS, free_port  # noqa: E402
from leaddb.backends.local import LocalBackend  # noqa: E402
from leaddb.console import say, seconds, table  # noqa: E402
from leaddb.errors import LeadDbError  # noqa: E402
from leaddb.statedir import scratch_root  # noqa: E402

DBMATE_VERSION = "2.36.0"
# migra's last release and the versions it was checked with on PostgreSQL 15 here
# (requirements/migra.in), installed into a venv of its own from their lock (`nox -s lock`)
MIGRA_LOCK = ROOT / "requirements" / "migra.txt"
MIGRA_REQUIREMENTS = tuple(
    line
    for raw in (ROOT / "requirements" / "migra.in").read_text(encoding="utf-8").splitlines()
    if (line := raw.split("#", 1)[0].strip())
)
GROUPS = ("floor", "apply", "reapply", "drift", "fast", "reset", "scale", "big", "imports", "docker")
DEFAULT_GROUPS = tuple(g for g in GROUPS if g != "big")
TIMED_GROUPS = ("floor", "apply", "reapply", "drift", "fast", "reset", "scale", "big")
SCALE_FILES = 1000
BIG_FILES = 9999  # the file-name rule (NNNN_name.sql) allows no more
FLOOR = "floor.floor"  # python -c "import invoke, psycopg"
SCRATCH = {"psql_bin": "peers_psql_bin", "psql_path": "peers_psql_path", "dbmate": "peers_dbmate"}
MIGRA_REFERENCE = "peers_migra_reference"
BASH_FLOOR = Path(__file__).resolve().parent / "fresh-cluster-floor.sh"


# What `invoke db.apply` does, minus the per-file table (what the issue calls quiet); the
# one summary line it prints is the one the task prints, for self_reported().
QUIET_APPLY = """\
import tasks  # what invoke loads first; workflow.apply then loads the rooms db.apply uses
from pathlib import Path
from leaddb import console, views, workflow
if not callable(getattr(views, "print_apply", None)):
    raise SystemExit("leaddb.views.print_apply is gone: update QUIET_APPLY in benchmarks/peers.py")
views.print_apply = lambda *args, **kwargs: None
result = workflow.apply(workflow.Options(backend="local", project_dir=Path.cwd()))
print(f"apply: {len(result.files)} files in {console.seconds(result.seconds)}")
"""


def quiet(call: Callable[[], object]) -> object:
    """Run ``call`` with the per-file table switched off, as QUIET_APPLY does."""
    printer = views.print_apply
    views.print_apply = lambda *args, **kwargs: None
    try:
        return call()
    finally:
        views.print_apply = printer


class PeersError(Exception):
    """A contender or a set-up step failed: one message, what failed and its output."""


# -- statistics and goals (pure: tested without a server) -------------------------------


@dataclass
class Stat:
    key: str
    runs: int
    median: float
    minimum: float
    maximum: float
    reported_median: float | None = None

    @classmethod
    def of(cls, key: str, values: Sequence[float], reported: Sequence[float] = ()) -> Stat:
        return cls(
            key,
            len(values),
            statistics.median(values),
            min(values),
            max(values),
            statistics.median(reported) if reported else None,
        )


@dataclass
class Goal:
    goal: str
    limit: str
    measured: str
    met: bool | None  # None: not measured in this run
    status: str


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "?"


def budget_goal(name: str, whole: float | None, floor: float | None, in_process: float | None) -> Goal:
    """whole ≤ (floor + in-process) × 1.10: nothing wasted above the interpreter, invoke,
    psycopg and the work itself."""
    goal = f"{name} whole ≤ (floor + in-process) + 10%"
    if whole is None or floor is None or in_process is None:
        return Goal(goal, "-", "-", None, "not measured in this run")
    limit = 1.10 * (floor + in_process)
    limit_text = f"1.1 × ({seconds(floor)} + {seconds(in_process)}) = {seconds(limit)}"
    return _verdict(goal, limit_text, seconds(whole), whole, limit)


def ratio_goal(
    goal: str, ours: float | None, peer: float | None, factor: float, floor: float | None = None
) -> Goal:
    """ours ≤ factor × peer (medians of one run). For a whole command, ``floor`` says whether
    the limit is below the start-up every Python task here pays before it does anything."""
    if ours is None or peer is None:
        return Goal(goal, f"{factor:.1f}×", "-", None, "not measured in this run")
    limit = factor * peer
    measured = f"{ours / peer:.2f}× ({seconds(ours)} vs {seconds(peer)})"
    verdict = _verdict(goal, f"{factor:.1f}× = {seconds(limit)}", measured, ours, limit)
    if floor is not None and floor >= limit:
        verdict.status += f"; the floor alone ({seconds(floor)}) is above the limit"
    return verdict


def _verdict(goal: str, limit_text: str, measured: str, value: float, limit: float) -> Goal:
    if value <= limit:
        return Goal(goal, limit_text, measured, True, f"met ({_pct(limit - value, limit)} to spare)")
    over = value - limit
    return Goal(goal, limit_text, measured, False, f"missed by {seconds(over)} (cut {_pct(over, value)})")


TASK_BUDGETS = (
    ("invoke db.apply", "apply.whole", "apply.inproc"),
    ("invoke db.reapply", "reapply.whole", "reapply.inproc"),
    ("invoke db.reset --backend local", "reset.whole", "reset.inproc"),
    ("invoke db.reset --fast", "fast.whole", "fast.inproc"),
    ("invoke db.drift", "drift.whole", "drift.inproc"),
    ("db.apply-equivalent, quiet, {files:,} files", "scale.whole", "scale.inproc"),
)


def goals(
    medians: dict[str, float], big_files: int = BIG_FILES, scale_files: int = SCALE_FILES
) -> list[Goal]:
    """The issue's goals against this run's medians (reported, never exit-coded)."""
    m = medians.get
    rows = [
        budget_goal(name.format(files=scale_files), m(whole), m(FLOOR), m(inproc))
        for name, whole, inproc in TASK_BUDGETS
    ]
    floor = m(FLOOR)
    rows += [
        ratio_goal(
            "db.apply whole ≤ 2.0× psql binary per file", m("apply.whole"), m("apply.psql_bin"), 2.0, floor
        ),
        ratio_goal(
            f"{scale_files:,} files: invoke db.apply whole ≤ 1.0× dbmate",
            m("scale.invoke"),
            m("scale.dbmate"),
            1.0,
            floor,
        ),
        ratio_goal(
            f"{big_files:,} files: invoke db.apply whole ≤ 1.2× one psql session",
            m("big.invoke"),
            m("big.psql_session"),
            1.2,
            floor,
        ),
        ratio_goal(
            "db.reset --backend local whole ≤ 0.6× bash floor", m("reset.whole"), m("reset.bash"), 0.6, floor
        ),
        ratio_goal(
            "db.reset --fast whole ≤ 2.0× dropdb + createdb -T",
            m("fast.whole"),
            m("fast.dropcreate"),
            2.0,
            floor,
        ),
        ratio_goal("db.drift whole ≤ 0.5× migra", m("drift.whole"), m("drift.migra"), 0.5, floor),
    ]
    return rows


# -- what the commands report about themselves ------------------------------------------

_DURATION = r"([\d.]+) (ms|s)"
SELF_REPORTS = {
    "apply": re.compile(rf"^apply: \d+ files in {_DURATION}\s*$", re.M),
    "reapply": re.compile(rf"^reapply: \d+ files in {_DURATION}\s*$", re.M),
    "drift": re.compile(rf"compared in {_DURATION}\)"),
    "reset": re.compile(rf"^\W*total\W+{_DURATION}\W*$", re.M),
}


def self_reported(kind: str, output: str) -> float | None:
    """The seconds a command printed for its own work (the runner's apply, the reset's phase
    total, the drift check), or None when its output no longer says it."""
    found = SELF_REPORTS[kind].findall(output)
    if not found:
        return None
    value, unit = found[-1]
    return float(value) / (1000 if unit == "ms" else 1)


# -- import time --------------------------------------------------------------------------

_IMPORTTIME = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S.*)$")


@dataclass(frozen=True)
class ImportLine:
    module: str
    self_us: int
    cumulative_us: int
    depth: int


def parse_importtime(stderr: str) -> list[ImportLine]:
    rows = []
    for line in stderr.splitlines():
        match = _IMPORTTIME.match(line)
        if match:
            self_us, cumulative, indent, module = match.groups()
            rows.append(ImportLine(module.strip(), int(self_us), int(cumulative), len(indent) // 2))
    return rows


def by_package(rows: Sequence[ImportLine]) -> dict[str, int]:
    """Self time summed per top-level package (microseconds), largest first."""
    totals: dict[str, int] = {}
    for row in rows:
        root = row.module.split(".", 1)[0]
        totals[root] = totals.get(root, 0) + row.self_us
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


# -- dbmate's file format -----------------------------------------------------------------

_BEGIN = {"BEGIN", "BEGIN TRANSACTION", "BEGIN WORK", "START TRANSACTION"}
_COMMIT = {"COMMIT", "COMMIT TRANSACTION", "COMMIT WORK", "END", "END TRANSACTION"}


def to_dbmate(text: str, name: str) -> tuple[str, str]:
    """A migration in dbmate's format, and how its transaction is kept.

    dbmate runs each file's up block as one string inside a transaction of its own
    (unless ``transaction:false``) and records the version in ``schema_migrations``
    inside it. A file that is exactly one ``BEGIN; … COMMIT;`` loses those two
    statements (their lines become comments, so line numbers stay) and dbmate's
    transaction stands in for them; any other file is kept verbatim with
    ``transaction:false``. dbmate requires a down block: it is empty."""
    statements = migrations.split_statements(text, name)
    lines = text.split("\n")
    first, last = (statements[0], statements[-1]) if statements else (None, None)
    wrapped = (
        first is not None
        and last is not None
        and first is not last
        and first.sql.upper() in _BEGIN
        and last.sql.upper() in _COMMIT
        and first.line == first.end_line
        and last.line == last.end_line
        and lines[first.line - 1].strip().rstrip(";").strip().upper() == first.sql.upper()
        and lines[last.line - 1].strip().rstrip(";").strip().upper() == last.sql.upper()
    )
    if wrapped:
        lines[first.line - 1] = "-- (BEGIN: dbmate wraps this file in its own transaction)"
        lines[last.line - 1] = "-- (COMMIT: dbmate commits its transaction)"
        header, mode = "-- migrate:up", "dbmate's transaction"
    else:
        header, mode = "-- migrate:up transaction:false", "the file's own (transaction:false)"
    body = "\n".join(lines).rstrip("\n")
    return f"{header}\n{body}\n\n-- migrate:down\n", mode


# -- the harness --------------------------------------------------------------------------


@dataclass
class Sample:
    seconds: float
    reported: float | None = None


@dataclass
class Contender:
    key: str
    group: str
    role: str  # whole | in-process | floor | peer
    label: str
    run: Callable[[], Sample]
    prepare: Callable[[], None] | None = None
    warm: bool = True  # part of the untimed warm-up round (which also checks it works)


@dataclass
class Report:
    date: str
    command: str
    runs: int
    groups: list[str]
    machine: dict
    load: dict = field(default_factory=dict)
    contenders: list[dict] = field(default_factory=list)
    samples: dict[str, list[float]] = field(default_factory=dict)
    reported: dict[str, list[float]] = field(default_factory=dict)
    stats: list[dict] = field(default_factory=list)
    ratios: dict[str, float] = field(default_factory=dict)
    goals: list[dict] = field(default_factory=list)
    imports: dict = field(default_factory=dict)
    docker: dict | None = None
    notes: list[str] = field(default_factory=list)
    run: str = ""  # the run's name (run_name): every table rendered from it carries it


def run_name(report: Report) -> str:
    """What names one run wherever its figures go: its date, the commit measured (``+``: with
    uncommitted changes), the rounds and the 1-minute load average from start to end."""
    loads = [report.load.get("start"), *report.load.get("rounds", []), report.load.get("end")]
    ones = [values[0] for values in loads if values]
    load = f"{min(ones):.2f}–{max(ones):.2f}" if ones else "unknown"
    return (
        f"peers run {report.date}, commit {report.machine.get('commit') or 'unknown'}, "
        f"{report.runs} interleaved runs, 1-minute load {load}"
    )


RUN_LINE = "Run: "  # the first line of every rendered table block: "Run: <run_name>"
BEGIN, END = "<!-- peers run: begin -->", "<!-- peers run: end -->"
READMES = ("README.md", "benchmarks/README.md")


def _blocks(text: str) -> tuple[str, list[tuple[str, str]]]:
    """``text`` split at its markers (each a line of its own): what precedes the first, then
    (inside, after) per block; a BEGIN without its END is an error."""
    parts = re.split(rf"^{re.escape(BEGIN)}$", text, flags=re.MULTILINE)
    blocks = []
    for chunk in parts[1:]:
        inside = re.split(rf"^{re.escape(END)}$", chunk, maxsplit=1, flags=re.MULTILINE)
        if len(inside) != 2:
            raise PeersError(f"a `{BEGIN}` line without its `{END}` line")
        blocks.append((inside[0], inside[1]))
    return parts[0], blocks


def named_runs(text: str) -> list[str]:
    """The run named by each block between BEGIN and END in ``text`` (its ``Run:`` line)."""
    names = []
    for inside, _ in _blocks(text)[1]:
        lines = inside.strip().splitlines()
        first = lines[0] if lines else ""
        names.append(first[len(RUN_LINE) :].strip("` ") if first.startswith(RUN_LINE) else "")
    return names


PEERS_TABLE_HEADERS = (
    "| work | contender |",
    "| goal | limit | measured |",
    "| work | ours, whole command |",
)


def figures_outside_runs(text: str) -> list[str]:
    """Lines of a peers table (``| work | …`` rows and the goals) outside every named block."""
    before, blocks = _blocks(text)
    outside = [before, *(after for _, after in blocks)]
    return [line for part in outside for line in part.splitlines() if line.startswith(PEERS_TABLE_HEADERS)]


def replace_runs(text: str, block: list[str]) -> str:
    """``text`` with every named block's content replaced by ``block``."""
    before, blocks = _blocks(text)
    content = "\n" + "\n".join(block) + "\n"
    return before + "".join(f"{BEGIN}{content}{END}{after}" for _, after in blocks)


def cache_dir() -> Path:
    override = os.environ.get("LEADDB_PEERS_CACHE")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or os.environ.get("LOCALAPPDATA") or Path.home() / ".cache"
    return Path(base) / "leaddb" / "peers"


def _pg_bindir() -> Path | None:
    bindir = platforms.pg_config_bindir()
    if bindir is not None:
        return bindir
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _exe(path: Path) -> Path:
    return path.with_suffix(".exe") if sys.platform == "win32" else path


class Harness:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.timeout = args.timeout
        self.notes: list[str] = []
        self.cache = cache_dir()
        self.state_dir = Path(tempfile.mkdtemp(prefix="leaddb-peers-", dir=scratch_root()))
        # as the local backend's own state directory: as root, root:postgres 0710, so that the
        # server user (the bash floor's, the cluster's) can traverse it; else 0700
        mode, group = permissions.wanted_mode()
        permissions.ensure(self.state_dir, mode=mode, group=group, hint="the harness made it a moment ago")
        self.work = self.state_dir / "work"
        self.work.mkdir()
        self.log = self.work / "last-command.log"
        os.environ["LEADDB_STATE_DIR"] = str(self.state_dir)  # for the in-process calls
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
        }
        self.as_server_user = platforms.running_as_root()
        self.backend = LocalBackend(ROOT, state_dir=self.state_dir)
        self.files = verdict.load(ROOT)
        self.bindir = _pg_bindir()
        self.dbmate: Path | None = None
        self.migra: Path | None = None
        self.projects: dict[int, tuple[Path, list[migrations.Migration]]] = {}
        self.dbmate_dirs: dict[str, Path] = {}
        self.floor_dir = self.state_dir / "bash-floor"
        self.floor_port = free_port()

    # -- server and databases ----------------------------------------------------------
    def conninfo(self, dbname: str | None = None) -> str:
        """For the untimed steps: the server answers (the whole commands restart it), then
        ``dbname``'s connection string."""
        self.backend.start()
        return self.backend.conninfo(dbname)

    def params(self, dbname: str | None = None) -> dict:
        return conninfo_to_dict(self.conninfo(dbname))

    @property
    def dbname(self) -> str:
        return str(self.params()["dbname"])

    def recreate(self, dbname: str, *, applied: bool = False) -> None:
        """An empty database (from template0), untimed; with ``applied``, migrated too."""
        with janitor.maintenance(self.conninfo("postgres")) as conn:
            janitor.drop_database(conn, dbname)
            janitor.create_database(conn, dbname, template="template0")
        if applied:
            self.backend.apply(self.files, dbname=dbname)

    def database_exists(self, dbname: str) -> bool:
        with janitor.maintenance(self.conninfo("postgres")) as conn:
            return (
                conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone() is not None
            )

    # -- timing ------------------------------------------------------------------------
    def command(self, argv: Sequence[str | Path], what: str, **options) -> tuple[float, str]:
        """Run one program to completion, timed from spawn to exit: :meth:`commands` with one
        program (``options``: its keyword arguments)."""
        return self.commands([argv], what, **options)

    def commands(
        self,
        argvs: Sequence[Sequence[str | Path]],
        what: str,
        *,
        cwd: Path = ROOT,
        ok: Sequence[int] = (0,),
        timeout: float | None = None,
        as_server_user: bool = False,
        env: dict[str, str] | None = None,
    ) -> tuple[float, str]:
        """The one timer: programs run one after another, timed from the first spawn to the
        last exit; the first failure stops them. Their output goes to a file (never a pipe:
        pg_ctl leaves the server behind) and is read afterwards. ``timeout`` bounds each one."""
        # as the server user: its uid and its groups, none of root's (platforms.run_as)
        user = platforms.run_as("postgres") if as_server_user and self.as_server_user else {}
        limit = timeout or self.timeout
        with self.log.open("wb") as out:
            started = time.perf_counter()
            for argv in argvs:
                argv = [str(a) for a in argv]
                try:
                    done = subprocess.run(
                        argv,
                        cwd=cwd,
                        env=env or self.env,
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        timeout=limit,
                        **user,
                    )
                except subprocess.TimeoutExpired:
                    raise PeersError(
                        f"{what}: did not finish within {limit:.0f} s ({' '.join(argv)})"
                    ) from None
                except OSError as exc:
                    raise PeersError(f"{what}: cannot run {argv[0]}: {exc}") from None
                if done.returncode not in ok:
                    output = self.log.read_text(encoding="utf-8", errors="replace")
                    tail = "\n".join("    " + line for line in output.splitlines()[-15:])
                    raise PeersError(f"{what}: exit {done.returncode} ({' '.join(argv)})\n{tail}")
            elapsed = time.perf_counter() - started
        return elapsed, self.log.read_text(encoding="utf-8", errors="replace")

    def invoke(
        self, task: str, *flags: str, kind: str, cwd: Path = ROOT, timeout: float | None = None
    ) -> Sample:
        argv = [sys.executable, "-m", "invoke", task, "--backend", "local", *flags]
        elapsed, output = self.command(argv, f"invoke {task}", cwd=cwd, timeout=timeout)
        return Sample(elapsed, self_reported(kind, output))

    def in_process(self, what: str, call: Callable[[], object]) -> Sample:
        """The task's library call in this process (imports already paid), output discarded.

        The harness's own objects (parsed projects, samples) are frozen out of the garbage
        collector's sight first: a task in a fresh process has no such heap to scan, and
        with 1,000 parsed files held here the collector's passes would be charged to it."""
        sink = io.StringIO()
        gc.collect()
        gc.freeze()
        try:
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                started = time.perf_counter()
                try:
                    call()
                except LeadDbError as exc:
                    raise PeersError(
                        f"{what} (in-process) failed:\n{exc}\n{sink.getvalue()[-2000:]}"
                    ) from None
                elapsed = time.perf_counter() - started
        finally:
            gc.unfreeze()
        return Sample(elapsed)

    def quiet_apply(self, project: Path, timeout: float | None = None) -> Callable[[], Sample]:
        """``invoke db.apply``'s work as a whole process, without its per-file table: the task's
        imports, then ``workflow.apply`` with the table printer replaced (invoke's own
        command-line parsing is not paid)."""
        argv = [sys.executable, "-c", QUIET_APPLY]

        def run() -> Sample:
            elapsed, output = self.command(argv, "db.apply-equivalent, quiet", cwd=project, timeout=timeout)
            return Sample(elapsed, self_reported("apply", output))

        return run

    def options(self, project: Path = ROOT) -> workflow.Options:
        return workflow.Options(backend="local", dsn="", project_dir=project)

    def psql_target(self, dbname: str) -> tuple[str, dict[str, str]]:
        """psql's ``-d`` for ``dbname``, and its environment (the password, never on the command
        line, where ps shows it)."""
        params = self.params(dbname)
        env = dict(self.env)
        if params.get("password"):
            env["PGPASSWORD"] = str(params.pop("password"))
        return make_conninfo(**params), env

    def psql_session(self, psql: Path, dbname: str, paths: Sequence[Path], what: str) -> Sample:
        """One ``psql -X -q -v ON_ERROR_STOP=1 -d DB -f FILE1 -f FILE2 ...`` session: the files in
        order over one connection, the floor of any applier (names relative to their directory,
        which is the working directory, to keep the command line short)."""
        target, env = self.psql_target(dbname)
        directory = paths[0].parent
        argv = [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", target]
        for path in paths:
            argv += ["-f", path.relative_to(directory)]
        elapsed, _ = self.command(argv, what, cwd=directory, env=env, timeout=max(self.timeout, 1800))
        return Sample(elapsed)

    def psql_per_file(self, psql: Path, dbname: str, paths: Sequence[Path], what: str) -> Sample:
        """``psql -X -q -v ON_ERROR_STOP=1 -d DB -f FILE`` once per file, as the manual path."""
        target, env = self.psql_target(dbname)
        argv = [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", target, "-f"]
        return Sample(self.commands([[*argv, path] for path in paths], what, env=env)[0])

    # -- peers' installs ---------------------------------------------------------------
    def install_dbmate(self) -> None:
        arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(
            platform.machine().lower(), platform.machine().lower()
        )
        system = {"linux": "linux", "darwin": "darwin", "win32": "win32"}.get(sys.platform, sys.platform)
        prefix = self.cache / "dbmate"
        binary = _exe(prefix / "node_modules" / "@dbmate" / f"{system}-{arch}" / "bin" / "dbmate")
        if not binary.is_file() or DBMATE_VERSION not in self._version(binary, "--version"):
            npm = shutil.which("npm")
            if npm is None:
                self.notes.append(
                    "dbmate: skipped, npm is not installed (it installs dbmate from the npm registry)"
                )
                return
            prefix.mkdir(parents=True, exist_ok=True)
            say(f"installing dbmate {DBMATE_VERSION} with npm into {prefix}")
            try:
                self.command(
                    [
                        npm,
                        "install",
                        "--no-save",
                        "--no-audit",
                        "--no-fund",
                        "--prefix",
                        prefix,
                        f"dbmate@{DBMATE_VERSION}",
                    ],
                    "npm install dbmate",
                    cwd=prefix,
                    timeout=600,
                )
            except PeersError as exc:
                self.notes.append(f"dbmate: skipped, it could not be installed: {exc}")
                return
        if not binary.is_file():
            self.notes.append(f"dbmate: skipped, npm installed no binary for this platform at {binary}")
            return
        self.dbmate = binary

    def install_migra(self) -> None:
        venv = self.cache / "migra-venv"
        bindir = venv / ("Scripts" if sys.platform == "win32" else "bin")
        migra, python = _exe(bindir / "migra"), _exe(bindir / "python")
        stamp = venv / ".leaddb-peers-requirements"
        wanted = MIGRA_LOCK.read_text(encoding="utf-8")
        installed = stamp.read_text(encoding="utf-8") if stamp.is_file() else ""
        if installed != wanted or not migra.is_file():
            say(f"installing migra into {venv} ({', '.join(MIGRA_REQUIREMENTS)})")
            try:
                if not python.is_file():
                    self.command([sys.executable, "-m", "venv", venv], "python -m venv", timeout=300)
                self.command(
                    [
                        python,
                        "-m",
                        "pip",
                        "install",
                        "--quiet",
                        "--disable-pip-version-check",
                        "--require-hashes",
                        "-r",
                        MIGRA_LOCK,
                    ],
                    "pip install migra",
                    timeout=900,
                )
            except PeersError as exc:
                self.notes.append(f"migra: skipped, it could not be installed: {exc}")
                return
            stamp.write_text(wanted, encoding="utf-8", newline="\n")
        self.migra = migra

    def _version(self, binary: Path, flag: str) -> str:
        try:
            done = subprocess.run([str(binary), flag], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return (done.stdout + done.stderr).strip()

    # -- generated projects and adapted files ------------------------------------------
    def project(self, count: int) -> tuple[Path, list[migrations.Migration]]:
        """A project of ``count`` generated files that ``invoke db.apply`` takes as it is: the
        files, a spec that declares their directory and prints each one
        (``generated.generated_project``), this checkout's compose file and tasks.py."""
        if count not in self.projects:
            project = self.work / f"project-{count}"
            files = generated.generated_project(project, count)
            for name in ("docker-compose.yml", "tasks.py", ".env"):
                if (ROOT / name).is_file():
                    shutil.copyfile(ROOT / name, project / name)
            self.projects[count] = (project, files)
        return self.projects[count]

    def spec_refused(self, project: Path) -> bool:
        """Whether the tasks refuse ``project``'s spec for its size (9,999 printed files make a
        spec of some 1.7 MB, above ``leaddb.spec.MAX_SPEC_BYTES``): said in a note, not timed."""
        size = (project / spec.SPEC_FILENAME).stat().st_size
        if size <= spec.MAX_SPEC_BYTES:
            return False
        self.notes.append(
            f"{project.name}: its spec ({size // 1024} KiB, every file printed) is above what the tasks "
            f"read ({spec.MAX_SPEC_BYTES // 1024} KiB, leaddb.spec.MAX_SPEC_BYTES): our commands are not "
            "timed on it, the peers are"
        )
        return True

    def dbmate_dir(self, label: str, files: Sequence[migrations.Migration]) -> Path:
        if label not in self.dbmate_dirs:
            directory = self.work / f"dbmate-{label}"
            directory.mkdir()
            modes: dict[str, int] = {}
            for m in files:
                text, mode = to_dbmate(m.text, m.name)
                (directory / m.name).write_text(text, encoding="utf-8", newline="\n")
                modes[mode] = modes.get(mode, 0) + 1
            kept = ", ".join(f"{n} file(s) in {mode}" for mode, n in modes.items())
            self.notes.append(f"dbmate, {label}: {kept}; it also keeps a schema_migrations table")
            self.dbmate_dirs[label] = directory
        return self.dbmate_dirs[label]

    def dbmate_url(self, dbname: str) -> str:
        """dbmate's URL for ``dbname``: over the same Unix socket as everyone else here."""
        p = self.params(dbname)
        user, host = quote(str(p["user"]), safe=""), str(p.get("host", ""))
        if host.startswith("/"):
            query = urlencode({"socket": host, "port": p["port"], "sslmode": "disable"})
            return f"postgres://{user}@/{dbname}?{query}"
        auth = f"{user}:{quote(str(p['password']), safe='')}" if p.get("password") else user
        return f"postgres://{auth}@{host}:{p['port']}/{dbname}?sslmode=disable"

    def migra_url(self, dbname: str) -> str:
        p = self.params(dbname)
        auth = quote(str(p["user"]), safe="")
        if p.get("password"):
            auth += ":" + quote(str(p["password"]), safe="")
        host = str(p.get("host", ""))
        if host.startswith("/"):
            return f"postgresql+psycopg2://{auth}@/{dbname}?{urlencode({'host': host, 'port': p['port']})}"
        return f"postgresql+psycopg2://{auth}@{host}:{p['port']}/{dbname}"

    def run_dbmate(self, label: str, files: Sequence[migrations.Migration], dbname: str) -> Sample:
        directory = self.dbmate_dir(label, files)
        argv = [
            self.dbmate,
            "--url",
            self.dbmate_url(dbname),
            "--migrations-dir",
            directory,
            "--no-dump-schema",
            "migrate",
        ]
        elapsed, _ = self.command(argv, f"dbmate migrate ({label})", cwd=directory)
        return Sample(elapsed)

    # -- the bash floor ------------------------------------------------------------------
    def setup_bash_floor(self) -> None:
        floor = self.floor_dir
        (floor / "sock").mkdir(parents=True)
        (floor / "files").mkdir()
        for m in self.files:  # copies the server user can read
            shutil.copyfile(m.path, floor / "files" / m.name)
        shutil.copyfile(BASH_FLOOR, floor / BASH_FLOOR.name)
        (floor / "data.pw").write_text(secrets.token_urlsafe(18) + "\n", encoding="utf-8", newline="\n")
        settings = {**SERVER_SETTINGS, "listen_addresses": "'127.0.0.1'"}
        (floor / "data.conf").write_text(
            "\n# as the leaddb local backend\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()),
            encoding="utf-8",
            newline="\n",
        )
        if self.as_server_user:
            for path in [floor, *floor.rglob("*")]:
                platforms.chown(path, platforms.user_ids("postgres")[0], -1)
        (floor / "data.pw").chmod(0o600)

    def stop_bash_floor(self) -> None:
        data = self.floor_dir / "data"
        if (data / "postmaster.pid").exists():
            self.command(
                [self.bindir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"],
                "pg_ctl stop (bash floor)",
                as_server_user=True,
                timeout=60,
            )
        shutil.rmtree(data, ignore_errors=True)

    def run_bash_floor(self) -> Sample:
        bash = shutil.which("bash")
        files = sorted((self.floor_dir / "files").iterdir())
        argv = [
            bash,
            self.floor_dir / BASH_FLOOR.name,
            self.bindir,
            self.floor_dir / "data",
            self.floor_port,
            self.floor_dir / "sock",
            self.dbname,
            *files,
        ]
        elapsed, _ = self.command(argv, "bash floor", cwd=self.floor_dir, as_server_user=True)
        return Sample(elapsed)

    def prepare_bash_floor(self) -> None:
        if not (self.floor_dir / "files").is_dir():
            self.setup_bash_floor()
        self.stop_bash_floor()
        self.floor_port = free_port()

    # -- contenders ----------------------------------------------------------------------
    def psql_binaries(self) -> tuple[Path | None, Path | None]:
        """The real psql (``pg_config --bindir``) and the one on PATH, when that is another."""
        psql_bin = _exe(self.bindir / "psql") if self.bindir else None
        which = shutil.which("psql")
        psql_path = Path(which) if which else None
        if psql_path and psql_bin and psql_path.resolve() == psql_bin.resolve():
            self.notes.append(f"psql on PATH is the real binary ({psql_path}): measured once")
            return psql_bin, None
        if psql_path:
            self.notes.append(f"psql on PATH: {psql_path} (resolves to {psql_path.resolve()})")
        return psql_bin, psql_path

    def contenders(self, groups: Sequence[str]) -> list[Contender]:
        """Everything timed, in the order of a round: one row per contender, (group, name,
        role, label, run, prepare, warm); a peer whose program is missing has no row."""
        psql_bin, psql_path = self.psql_binaries()
        files = [m.path for m in self.files]
        opts, n, big = self.options, f"{self.args.files:,} files", f"{self.args.big_files:,} files"
        scale = lambda: self.project(self.args.files)  # noqa: E731 - generated when first used
        large = lambda: self.project(self.args.big_files)  # noqa: E731

        def fresh(dbname: str) -> Callable[[], None]:
            return lambda: self.recreate(dbname)

        def python(code: str) -> Callable[[], Sample]:
            return lambda: Sample(self.command([sys.executable, "-c", code], f"python -c {code!r}")[0])

        def ours(what: str, call: Callable[[], object]) -> Callable[[], Sample]:
            return lambda: self.in_process(what, call)

        def psql(how, binary, dbname: str, paths: Callable[[], Sequence[Path]], what: str):
            return lambda: how(binary, dbname, paths(), what)

        def generated(project) -> Callable[[], list[Path]]:
            return lambda: [m.path for m in project()[1]]

        default, applied = (
            lambda: self.recreate(self.dbname),
            lambda: self.recreate(self.dbname, applied=True),
        )
        bin_db, path_db, dbmate_db = SCRATCH["psql_bin"], SCRATCH["psql_path"], SCRATCH["dbmate"]
        dbmate = f"dbmate {DBMATE_VERSION} migrate"
        bash_floor = bool(self.bindir and shutil.which("bash"))
        # fmt: off
        rows = [
            ("floor", "pass", "floor", 'python -c "pass"', python("pass"), None, True, True),
            ("floor", "floor", "floor", 'python -c "import invoke, psycopg" (the floor)',
             python("import invoke, psycopg"), None, True, True),
            ("floor", "tasks", "floor", 'python -c "import tasks" (what `invoke --list` loads)',
             python("import tasks"), None, True, True),
            ("apply", "whole", "whole", "invoke db.apply", lambda: self.invoke("db.apply", kind="apply"),
             default, True, True),
            ("apply", "inproc", "in-process", "workflow.apply",
             ours("db.apply", lambda: workflow.apply(opts())), default, True, True),
            ("apply", "psql_bin", "peer", f"psql -f per file ({psql_bin})",
             psql(self.psql_per_file, psql_bin, bin_db, lambda: files, "psql binary"), fresh(bin_db), True,
             psql_bin),
            ("apply", "psql_path", "peer", f"psql -f per file ({psql_path}, on PATH)",
             psql(self.psql_per_file, psql_path, path_db, lambda: files, "psql on PATH"), fresh(path_db),
             True, psql_path),
            ("apply", "dbmate", "peer", dbmate, lambda: self.run_dbmate("project", self.files, dbmate_db),
             fresh(dbmate_db), True, self.dbmate),
            ("reapply", "whole", "whole", "invoke db.reapply",
             lambda: self.invoke("db.reapply", kind="reapply"), applied, True, True),
            ("reapply", "inproc", "in-process", "workflow.reapply",
             ours("db.reapply", lambda: workflow.reapply(opts())), None, True, True),
            ("reapply", "psql_bin", "peer", "psql -f per file, second time (binary)",
             psql(self.psql_per_file, psql_bin, bin_db, lambda: files, "psql, second time"),
             lambda: self.recreate(bin_db, applied=True), True, psql_bin),
            ("drift", "whole", "whole", "invoke db.drift", lambda: self.invoke("db.drift", kind="drift"),
             applied, True, True),
            ("drift", "inproc", "in-process", "workflow.drift_check",
             ours("db.drift", lambda: workflow.drift_check(opts())), None, True, True),
            ("drift", "migra", "peer", "migra (its reference database prebuilt)", self.run_migra,
             self.prepare_migra, True, self.migra),
            ("fast", "whole", "whole", "invoke db.reset --fast",
             lambda: self.invoke("db.reset", "--fast", kind="reset"), self.prepare_template, True, True),
            ("fast", "inproc", "in-process", "workflow.reset(fast_reset=True)",
             ours("db.reset --fast", lambda: workflow.reset(opts(), fast_reset=True)), self.prepare_template,
             True, True),
            ("fast", "dropcreate", "peer", "dropdb --force + createdb -T (binaries)", self.run_dropcreate,
             self.prepare_template, True, self.bindir),
            ("reset", "whole", "whole", "invoke db.reset --backend local",
             lambda: self.invoke("db.reset", kind="reset"), None, True, True),
            ("reset", "inproc", "in-process", "workflow.reset (local)",
             ours("db.reset", lambda: workflow.reset(opts())), None, True, True),
            ("reset", "bash", "peer", "bash: initdb, pg_ctl -w start, createdb, psql per file",
             self.run_bash_floor, self.prepare_bash_floor, True, bash_floor),
            ("scale", "whole", "whole", f"db.apply-equivalent, quiet, {n}",
             lambda: self.quiet_apply(scale()[0])(), default, True, True),
            ("scale", "invoke", "whole", f"invoke db.apply, {n}",
             lambda: self.invoke("db.apply", kind="apply", cwd=scale()[0]), default, True, True),
            ("scale", "inproc", "in-process", f"workflow.apply, quiet, {n}",
             ours("db.apply", lambda: quiet(lambda: workflow.apply(opts(scale()[0])))), default, True, True),
            ("scale", "dbmate", "peer", f"{dbmate}, {n}",
             lambda: self.run_dbmate(f"{self.args.files}-files", scale()[1], dbmate_db), fresh(dbmate_db),
             True, self.dbmate),
            ("scale", "psql_session", "peer", f"one psql session, -f per file (binary), {n}",
             psql(self.psql_session, psql_bin, bin_db, generated(scale), "psql session"), fresh(bin_db),
             True, psql_bin),
            ("scale", "psql_bin", "peer", f"psql -f per file (binary), {n}",
             psql(self.psql_per_file, psql_bin, bin_db, generated(scale), "psql binary"), fresh(bin_db),
             False, psql_bin),
            ("big", "whole", "whole", f"db.apply-equivalent, quiet, {big}",
             lambda: self.quiet_apply(large()[0], 1800)(), default, False, True),
            ("big", "invoke", "whole", f"invoke db.apply, {big}",
             lambda: self.invoke("db.apply", kind="apply", cwd=large()[0], timeout=1800), default, False,
             True),
            ("big", "psql_session", "peer", f"one psql session, -f per file (binary), {big}",
             psql(self.psql_session, psql_bin, bin_db, generated(large), "psql session"), fresh(bin_db),
             False, psql_bin),
        ]
        # fmt: on
        refused = "big" in groups and self.spec_refused(large()[0])
        found = [
            Contender(f"{group}.{name}", group, role, label, run, prepare, warm)
            for group, name, role, label, run, prepare, warm, present in rows
            if group in groups and present and not (refused and group == "big" and role == "whole")
        ]
        if "reset" in groups and not bash_floor:
            self.notes.append("bash floor: skipped (needs bash and the PostgreSQL binaries)")
        return found

    # -- peers needing their own preparation ---------------------------------------------
    def prepare_template(self) -> None:
        """``--fast`` and ``createdb -T`` both copy the template built from the migrations."""
        if not self.database_exists(fast.template_name(self.files)):
            with self.backend.lock("benchmarks/peers.py"), contextlib.redirect_stdout(io.StringIO()):
                fast.reset(self.backend, self.files)

    def run_dropcreate(self) -> Sample:
        p = self.params("postgres")
        where = ["-h", str(p["host"]), "-p", str(p["port"]), "-U", str(p["user"])]
        dbname, template = self.dbname, fast.template_name(self.files)
        argvs = [
            [_exe(self.bindir / "dropdb"), *where, "--force", dbname],
            [_exe(self.bindir / "createdb"), *where, "-T", template, dbname],
        ]
        return Sample(self.commands(argvs, "dropdb + createdb -T")[0])

    def prepare_migra(self) -> None:
        """The live database applied; the reference (the same migrations) built once per cluster."""
        self.recreate(self.dbname, applied=True)
        if not self.database_exists(MIGRA_REFERENCE):
            self.recreate(MIGRA_REFERENCE, applied=True)

    def run_migra(self) -> Sample:
        argv = [self.migra, "--unsafe", self.migra_url(self.dbname), self.migra_url(MIGRA_REFERENCE)]
        elapsed, output = self.command(argv, "migra", ok=(0, 2))
        if output.strip():
            raise PeersError(f"migra found differences between identical schemas:\n{output[:2000]}")
        return Sample(elapsed)

    # -- teardown ------------------------------------------------------------------------
    def close(self) -> None:
        try:
            if self.floor_dir.exists():
                self.stop_bash_floor()
        except PeersError as exc:
            say(f"note: {exc}")
        try:
            with self.backend.lock("benchmarks/peers.py"):
                self.backend.down()
        except LeadDbError as exc:
            say(f"note: {exc}")
        shutil.rmtree(self.state_dir, ignore_errors=True)


# -- imports --------------------------------------------------------------------------


def measure_imports(harness: Harness, runs: int) -> dict:
    """``python -X importtime`` of ``import tasks`` and of the floor, ``runs`` times each
    (interleaved); the median per module."""
    found: dict[str, list[list[ImportLine]]] = {"import tasks": [], "import invoke, psycopg": []}
    for _ in range(runs):
        for code in found:
            done = subprocess.run(
                [sys.executable, "-X", "importtime", "-c", code],
                cwd=ROOT,
                env=harness.env,
                capture_output=True,
                text=True,
                timeout=harness.timeout,
            )
            if done.returncode != 0:
                raise PeersError(f"python -X importtime -c {code!r} failed:\n{done.stderr[-2000:]}")
            found[code].append(parse_importtime(done.stderr))
    result = {}
    for code, all_runs in found.items():
        cumulative: dict[str, list[int]] = {}
        self_times: dict[str, list[int]] = {}
        depth: dict[str, int] = {}
        for rows in all_runs:
            for row in rows:
                cumulative.setdefault(row.module, []).append(row.cumulative_us)
                self_times.setdefault(row.module, []).append(row.self_us)
                depth.setdefault(row.module, row.depth)
        medians = {m: statistics.median(v) for m, v in cumulative.items()}
        packages = by_package(
            [ImportLine(m, int(statistics.median(v)), 0, depth[m]) for m, v in self_times.items()]
        )
        total = sum(statistics.median(v) for v in self_times.values())
        top = sorted(medians.items(), key=lambda kv: -kv[1])[:20]
        result[code] = {
            "runs": runs,
            "total_us": total,
            "modules": len(medians),
            "top_cumulative_us": [{"module": m, "cumulative_us": us, "depth": depth[m]} for m, us in top],
            "self_us_by_package": dict(list(packages.items())[:20]),
        }
    return result


# -- report ---------------------------------------------------------------------------


def summarise(report: Report) -> dict[str, Stat]:
    stats = {
        key: Stat.of(key, values, report.reported.get(key, ()))
        for key, values in report.samples.items()
        if values
    }
    report.stats = [asdict(s) for s in stats.values()]
    medians = {k: s.median for k, s in stats.items()}
    for group in {c["group"] for c in report.contenders}:
        members = [c for c in report.contenders if c["group"] == group]
        for ours in (c for c in members if c["role"] in ("whole", "in-process")):
            for peer in (c for c in members if c["role"] == "peer"):
                if ours["key"] in medians and peer["key"] in medians:
                    report.ratios[f"{ours['key']} / {peer['key']}"] = (
                        medians[ours["key"]] / medians[peer["key"]]
                    )
    files = report.machine.get("scale_files", SCALE_FILES)
    report.goals = [asdict(g) for g in goals(medians, report.machine.get("big_files", BIG_FILES), files)]
    return stats


def print_report(report: Report, stats: dict[str, Stat]) -> list[str]:
    """The tables on the console, and the same as Markdown lines for benchmarks/README.md."""
    md: list[str] = [f"{RUN_LINE}`{report.run}`", ""]
    by_group: dict[str, list[dict]] = {}
    for c in report.contenders:
        by_group.setdefault(c["group"], []).append(c)
    load = report.load
    say(
        f"\npeers: {report.runs} interleaved runs, {report.date}, commit {report.machine.get('commit')}; "
        f"load average (1/5/15 min) start {load.get('start')}, end {load.get('end')}"
    )
    headers = ["contender", "role", "runs", "median", "min", "max", "whole ÷ this", "in-process ÷ this"]
    md += [f"| work | {' | '.join(headers)} |", "|" + "---|" * (len(headers) + 1)]
    for group, members in by_group.items():
        whole = next((stats[c["key"]] for c in members if c["role"] == "whole" and c["key"] in stats), None)
        inproc = next(
            (stats[c["key"]] for c in members if c["role"] == "in-process" and c["key"] in stats), None
        )
        rows = []
        for c in members:
            s = stats.get(c["key"])
            if s is None:
                continue
            label = c["label"]
            if s.reported_median is not None:
                label += f" (it reports {seconds(s.reported_median)} for its own work)"
            ratio_whole = f"{whole.median / s.median:.2f}×" if c["role"] == "peer" and whole else ""
            ratio_inproc = f"{inproc.median / s.median:.2f}×" if c["role"] == "peer" and inproc else ""
            row = [
                label,
                c["role"],
                s.runs,
                seconds(s.median),
                seconds(s.minimum),
                seconds(s.maximum),
                ratio_whole,
                ratio_inproc,
            ]
            rows.append(row)
            md.append(f"| {group} | " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |")
        table(f"{group}", headers, rows, right={2, 3, 4, 5, 6, 7})
    goal_rows = [[g["goal"], g["limit"], g["measured"], g["status"]] for g in report.goals]
    table("goals (issue 19; reported, not exit-coded)", ["goal", "limit", "measured", "status"], goal_rows)
    md += ["", "| goal | limit | measured | status |", "|---|---|---|---|"]
    md += ["| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |" for row in goal_rows]
    if report.imports:
        md.append("")
        for code, found in report.imports.items():
            say(
                f"\npython -X importtime -c {code!r}: {found['modules']} modules, "
                f"{found['total_us'] / 1000:.0f} ms of import work (median of {found['runs']})"
            )
            rows = [
                [r["module"], r["depth"], f"{r['cumulative_us'] / 1000:.1f} ms"]
                for r in found["top_cumulative_us"][:15]
            ]
            table(f"top cumulative imports: {code}", ["module", "depth", "cumulative"], rows, right={1, 2})
            packages = [
                [p, f"{us / 1000:.1f} ms"] for p, us in list(found["self_us_by_package"].items())[:12]
            ]
            table(f"self time by top-level package: {code}", ["package", "self"], packages, right={1})
            md.append(
                f"`python -X importtime -c {code!r}`: {found['total_us'] / 1000:.0f} ms of import work; "
                "by package: "
                + ", ".join(
                    f"{p} {us / 1000:.0f} ms" for p, us in list(found["self_us_by_package"].items())[:8]
                )
            )
    if report.docker:
        say(f"\ndocker: {report.docker.get('describe')}")
        md += ["", f"Docker engine storage: {report.docker.get('describe')}"]
    for note in report.notes:
        say(f"note: {note}")
    md += [""] + [f"- {note}" for note in report.notes]
    return md


def plot(report: Report, path: Path) -> None:
    """One panel per work, a box per contender (milliseconds, log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    groups: dict[str, list[dict]] = {}
    for c in report.contenders:
        if report.samples.get(c["key"]):
            groups.setdefault(c["group"], []).append(c)
    if not groups:
        return
    heights = [max(1.2, 0.45 * len(m) + 0.6) for m in groups.values()]
    fig, axes = plt.subplots(
        len(groups), 1, figsize=(10, sum(heights) + 0.8), height_ratios=heights, squeeze=False
    )
    # matplotlib 3.10 replaced vert=False with orientation="horizontal"
    newer = tuple(int(x) for x in matplotlib.__version__.split(".")[:2]) >= (3, 10)
    horizontal = {"orientation": "horizontal"} if newer else {"vert": False}
    colours = {"whole": "tab:blue", "in-process": "tab:cyan", "floor": "tab:gray", "peer": "tab:orange"}
    for ax, (group, members) in zip(axes[:, 0], groups.items(), strict=True):
        data = [[v * 1000 for v in report.samples[c["key"]]] for c in members]
        boxes = ax.boxplot(data, patch_artist=True, widths=0.6, **horizontal)
        for box, c in zip(boxes["boxes"], members, strict=True):
            box.set_facecolor(colours.get(c["role"], "white"))
        ax.set_yticks(range(1, len(members) + 1), [c["label"][:70] for c in members], fontsize=8)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_title(group, loc="left", fontsize=9)
        ax.grid(axis="x", alpha=0.3, which="both")
        ax.invert_yaxis()
    axes[-1, 0].set_xlabel("milliseconds (log); blue: our whole command, cyan: in-process, orange: peers")
    load = report.load
    fig.suptitle(
        f"leaddb side by side with the peers: {report.runs} interleaved runs, {report.date}, "
        f"load {(load.get('start') or ['?'])[0]} → {(load.get('end') or ['?'])[0]} "
        f"on {report.machine.get('cores')} cores",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def machine(harness: Harness, args: argparse.Namespace) -> dict:
    try:
        info = bench.machine_info(harness.backend)
    except LeadDbError:  # no cluster in this run (imports or docker only)
        info = {"cores": os.cpu_count(), "os": platform.platform(), "python": sys.version.split()[0]}
    info.update(
        {
            "pg_bindir": str(harness.bindir) if harness.bindir else None,
            "psql_on_path": shutil.which("psql"),
            "dbmate": harness._version(harness.dbmate, "--version") if harness.dbmate else None,
            "migra": list(MIGRA_REQUIREMENTS) if harness.migra else None,
            "storage": str(harness.state_dir),
            "commit": _commit(),
            "scale_files": args.files,
            "big_files": args.big_files,
        }
    )
    try:
        from importlib.metadata import version

        info["invoke"], info["psycopg"] = version("invoke"), version("psycopg")
    except Exception:  # noqa: BLE001 - informational only
        pass
    return info


def _commit() -> str | None:
    """The checkout measured (``+`` when it has uncommitted changes)."""
    git = shutil.which("git")
    if git is None:
        return None
    try:
        head = subprocess.run(
            [git, "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=30
        )
        dirty = subprocess.run(
            [git, "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return head.stdout.strip() + ("+" if dirty.stdout.strip() else "") if head.returncode == 0 else None


def docker_storage() -> dict | None:
    """The engine's storage, when one answers (quickly); None otherwise."""
    try:
        import docker

        client = docker.from_env(timeout=3)
        client.ping()
    except Exception:  # noqa: BLE001 - no engine, no report
        return None
    from leaddb.backends.docker import engine

    found = engine.storage(client)
    return {**found.to_dict(), "describe": found.describe()}


def _load() -> list[float] | None:
    load = platforms.load_average()
    return [round(v, 2) for v in load] if load else None


def run(args: argparse.Namespace) -> Report:
    groups = [g for g in GROUPS if g in args.only]
    if any(g in TIMED_GROUPS for g in groups) and "floor" not in groups:
        groups.insert(0, "floor")  # every goal is read against the floor of the same run
    report = Report(
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        command="python benchmarks/peers.py " + " ".join(sys.argv[1:]),
        runs=args.runs,
        groups=groups,
        machine={},
    )
    report.load["start"] = _load()
    if "docker" in groups:
        report.docker = docker_storage()
        if report.docker:
            say(f"docker: {report.docker['describe']}")
        else:
            report.notes.append("docker: no engine answered; storage not reported")
    harness = Harness(args)
    try:
        timed = [g for g in groups if g in TIMED_GROUPS]
        if timed:
            say(f"cluster for this run: {harness.state_dir} (storage of the local backend's clusters)")
            with harness.backend.lock("benchmarks/peers.py"):
                harness.backend.reset(harness.files)
            if {"apply", "scale"} & set(timed):
                harness.install_dbmate()
            if "drift" in timed:
                harness.install_migra()
            contenders = harness.contenders(timed)
            report.contenders = [
                {"key": c.key, "group": c.group, "role": c.role, "label": c.label} for c in contenders
            ]
            report.machine = machine(harness, args)
            if args.warm_up:
                say(f"warm-up round (untimed; checks each contender works): {len(contenders)} contenders")
                for c in contenders:
                    if not c.warm:
                        continue
                    if c.prepare:
                        c.prepare()
                    c.run()
            else:
                report.notes.append("no warm-up round (--no-warm-up): the first round met cold caches")
            for i in range(args.runs):
                started = time.perf_counter()
                for c in contenders:
                    if c.prepare:
                        c.prepare()
                    sample = c.run()
                    report.samples.setdefault(c.key, []).append(sample.seconds)
                    if sample.reported is not None:
                        report.reported.setdefault(c.key, []).append(sample.reported)
                report.load.setdefault("rounds", []).append(_load())
                say(f"round {i + 1}/{args.runs} in {seconds(time.perf_counter() - started)} (load {_load()})")
        else:
            report.machine = machine(harness, args)
        if "imports" in groups:
            report.imports = measure_imports(harness, args.runs)
    finally:
        report.load["end"] = _load()
        report.notes += harness.notes
        harness.close()
    report.run = run_name(report)
    return report


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help=f"comma-separated groups: {', '.join(GROUPS)} (default: all but big; the floor comes "
        "with any timed group)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--results", type=Path, default=ROOT / "benchmarks" / "results", help="where JSON, .md and .png go"
    )
    parser.add_argument(
        "--files", type=int, default=SCALE_FILES, help="files in the scale group (default 1000)"
    )
    parser.add_argument(
        "--big-files",
        type=int,
        default=BIG_FILES,
        help="files in the big group (default 9999, the most NNNN_ allows)",
    )
    parser.add_argument(
        "--readme",
        action="store_true",
        help=f"write this run's tables into {' and '.join(READMES)} (between their {BEGIN} markers)",
    )
    parser.add_argument(
        "--timeout", type=float, default=300, help="seconds any one program may take (default 300)"
    )
    parser.add_argument(
        "--no-warm-up",
        dest="warm_up",
        action="store_false",
        help="no untimed warm-up round (the first timed round then meets cold caches: for a check "
        "that the harness runs, not for figures)",
    )
    args = parser.parse_args(argv)
    only = [g.strip() for chunk in args.only for g in chunk.split(",") if g.strip()]
    unknown = sorted(set(only) - set(GROUPS))
    if unknown:
        parser.error(f"unknown group(s) {', '.join(unknown)}; choose from {', '.join(GROUPS)}")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if not 1 <= args.files <= 9999 or not 1 <= args.big_files <= 9999:
        parser.error("--files and --big-files must be 1..9999 (migration files are numbered NNNN_)")
    args.only = only or list(DEFAULT_GROUPS)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = run(args)
    except (PeersError, LeadDbError, psycopg.Error) as exc:
        say(f"peers: {exc}")
        return 1
    stats = summarise(report)
    markdown = print_report(report, stats)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    stem = args.results / f"{stamp}-peers"
    stem.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(asdict(report), indent=2, default=str) + "\n"
    stem.with_suffix(".json").write_text(text, encoding="utf-8", newline="\n")
    stem.with_suffix(".md").write_text("\n".join(markdown) + "\n", encoding="utf-8", newline="\n")
    plot(report, stem.with_suffix(".png"))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text, encoding="utf-8", newline="\n")
    say(f"results: {stem.with_suffix('.json')}, .md and .png")
    if args.readme:
        for name in READMES:
            path = ROOT / name
            path.write_text(
                replace_runs(path.read_text(encoding="utf-8"), markdown), encoding="utf-8", newline="\n"
            )
        say(f"{' and '.join(READMES)}: the tables between {BEGIN} and {END} are this run's ({report.run})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
