"""The command line's edge: every flag checked before any work, and the one boundary every
task passes through.

``boundary`` turns what a task raises into what the user sees: an expected failure
(``LeadDbError``) is one message and its exit code; Ctrl-C is "interrupted" with what the
task left behind, exit 130, and SIGTERM or SIGHUP (Windows: SIGBREAK) stop the task the same
way (``stop_signals``), exit 128 + the signal's number; an ``OSError`` - a file that cannot be
read or written, a full or read-only disk - is an ordinary failure too; anything else is a bug
in this tool, said so, with the full traceback written to a file rather than thrown at the user.
Every message is scrubbed of the task's DSN's secrets (``leaddb.masking``) first.

This module imports nothing heavy, so ``tasks.py`` can import it first and catch a Ctrl-C
while the rest loads (``starting``).
"""

from __future__ import annotations

import functools
import os
import re
import signal
import tempfile
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from invoke import Exit

from leaddb.errors import EXIT_FAILURE, Interrupted, LeadDbError, OptionError, Stopped, file_error

DEFAULT_RUNS = 10
DEFAULT_BENCH_RUNS = 5
MAX_SCALE = 100_000  # files per generated schema: a typo's extra zeros should not fill the disk
MAX_RUNS = 100_000  # resets per bench: at ~1 s each, more than a day
BOOT_TIMEOUT_ENV = "LEADDB_DOCKER_BOOT_TIMEOUT"  # the docker backend reads it (backends/docker/bootlog.py)

# What each task leaves when Ctrl-C stops it, and the next step ({built}: the backend's ``built``).
LEFT_BEHIND: dict[str, tuple[str, str]] = {
    "reset": ("{built} may be half-created", "`invoke db.reset` recreates it"),
    "apply": (
        "the file being applied was rolled back if it is one transaction (BEGIN; … COMMIT;); "
        "the files before it stay applied",
        "`invoke db.apply` applies the rest; `invoke db.reset` starts from empty",
    ),
    "reapply": (
        "the file being re-applied was rolled back if it is one transaction; the schema is otherwise "
        "as the last apply left it",
        "`invoke db.reapply` runs the check again",
    ),
    "introspect": ("the schema was not changed (a --json file may be incomplete)", "run the task again"),
    "drift": ("the schema was not changed", "`invoke db.drift` runs the comparison again"),
    "dump": ("api/db/schema.snapshot.json may be incomplete", "`invoke db.dump` writes it again"),
    "bench": (
        "no results were saved, and {built} may be half-created",
        "`invoke db.reset` recreates it; run the bench again",
    ),
    "verify": (
        "{built} may be half-created",
        "`invoke db.verify` starts the pipeline again from a fresh reset",
    ),
    "lint": ("nothing was changed", "run `invoke db.lint` again"),
    "status": ("nothing was changed (a --json file may be incomplete)", "run `invoke db.status` again"),
    "erd": ("the diagram files may be incomplete", "`invoke db.erd` writes them again"),
    "down": ("the removal may be partial", "`invoke db.down` again finishes it"),
}


def interrupted(task: str, backend: str = "auto", stop: BaseException | None = None) -> Interrupted:
    """What Ctrl-C (or ``stop``: a KeyboardInterrupt, a ``Stopped`` for SIGTERM and the like)
    left: the task's usual state, then what the code it stopped in said (its notes: the
    statement it cancelled, the session it ended)."""
    state, step = LEFT_BEHIND.get(task, ("the task stopped part-way", "run it again"))
    from leaddb import backends  # light: it imports a backend's module only when one is chosen

    state = state.format(built=backends.built_by(backend))
    notes = "".join(f"\n  {note}" for note in getattr(stop, "__notes__", ()))
    if isinstance(stop, Stopped):
        return Interrupted(
            f"terminated ({stop.signal_name}): db.{task} stopped; {state}{notes}",
            hint=step,
            exit_code=stop.exit_code,
        )
    return Interrupted(f"interrupted: db.{task} stopped; {state}{notes}", hint=step)


@contextmanager
def stop_signals() -> Iterator[None]:
    """While a task runs, SIGTERM and SIGHUP (Windows: SIGBREAK, from Ctrl-Break or the console
    window closing; ``platforms.stop_signals``) stop it as Ctrl-C does: raised where the task is
    (``Stopped``, a KeyboardInterrupt), so the statement in progress is cancelled on the server
    and its session ended before the task says what it left. A signal that arrives while the
    task is stopping is ignored: the clean-up is bounded, and a second Ctrl-C (nox sends one
    when it is interrupted itself) must not cut it short. A signal ignored when the task starts
    (``nohup``, a background job) stays ignored. Only the main thread can install handlers;
    elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    from leaddb import platforms  # here: this module stays light for tasks.py's first import

    names = {int(signal.SIGINT): "SIGINT", **{number: name for name, number in platforms.stop_signals()}}
    stopping: list[int] = []

    def handler(number, frame):
        if stopping:
            return
        stopping.append(number)
        if number == signal.SIGINT:
            raise KeyboardInterrupt
        raise Stopped(names[number], number)

    previous = {}
    for number in names:
        try:
            if signal.getsignal(number) == signal.SIG_IGN:
                continue
            previous[number] = signal.signal(number, handler)
        except (OSError, ValueError):  # not a signal this host can catch
            continue
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, signal.SIG_DFL if old is None else old)


def _dsn_named(args, kwargs) -> str:
    """The DSN a task was told to use (flag, then invoke config), for scrubbing its messages."""
    try:
        given = kwargs.get("dsn")
        if given is None and args:
            given = args[0].config.db.dsn
        return "" if given is None else str(given)
    except Exception:  # noqa: BLE001 - no DSN to scrub for
        return ""


def _scrubbed(message: str, dsn: str) -> str:
    if not dsn:
        return message
    from leaddb import masking

    return masking.scrub(message, dsn)


def _backend_named(args, kwargs) -> str:
    """The backend a task was told to use (flag, then invoke config), for the Ctrl-C message."""
    try:
        chosen = kwargs.get("backend") or args[0].config.db.backend
        return str(chosen).strip().lower()
    except Exception:  # noqa: BLE001 - only a better wording is at stake
        return "auto"


def _notes(exc: BaseException) -> str:
    """What the code an exception passed through added to it (e.g. where verify's reports are)."""
    return "".join(f"\n  {note}" for note in getattr(exc, "__notes__", ()))


def _bug_report(task: str, exc: BaseException, dsn: str = "") -> Exit:
    """An exception no check anticipated: a bug here, not a mistake of the user's. The
    traceback goes to a file (the user may have typed a password into the command line)."""
    text = _scrubbed("".join(traceback.format_exception(exc)), dsn)
    try:
        fd, name = tempfile.mkstemp(prefix="leaddb-bug-", suffix=".txt")
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
            out.write(f"invoke db.{task}\n\n{text}")
        where = f"the full traceback is in {name}"
    except OSError:
        where = "the traceback could not be written to the temporary directory"
    summary = _scrubbed(f"{type(exc).__name__}: {exc}".splitlines()[0][:300], dsn)
    return Exit(
        f"internal error in db.{task}: {summary}{_scrubbed(_notes(exc), dsn)}\n"
        f"  this is a bug in leaddb, not in your input; {where}\n"
        "  next step: report it with that file and the command you ran",
        EXIT_FAILURE,
    )


def boundary(body):
    """Wrap a task: expected failures, Ctrl-C and bugs all end in one message and a
    documented exit code, never a traceback."""
    task = body.__name__

    @functools.wraps(body)
    def run(*args, **kwargs):
        dsn = _dsn_named(args, kwargs)
        try:
            with stop_signals():
                return body(*args, **kwargs)
        except LeadDbError as exc:
            raise Exit(_scrubbed(str(exc), dsn), exc.exit_code) from None
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP (Stopped)
            failure = interrupted(task, _backend_named(args, kwargs), exc)
            raise Exit(_scrubbed(str(failure), dsn), failure.exit_code) from None
        except Exit:
            raise
        except OSError as exc:  # a file, a disk, a socket: the user's environment, not a bug
            failure = file_error(exc, "use")
            raise Exit(_scrubbed(str(failure) + _notes(exc), dsn), failure.exit_code) from None
        except Exception as exc:  # noqa: BLE001 - reported as a bug, with the traceback in a file
            raise _bug_report(task, exc, dsn) from None

    return run


@contextmanager
def starting() -> Iterator[None]:
    """Around ``tasks.py``'s imports: Ctrl-C while the tooling loads changes nothing."""
    try:
        yield
    except KeyboardInterrupt:
        raise Exit("interrupted while starting; nothing was changed", Interrupted.exit_code) from None


def check_invoke_config(project_dir: Path, defaults: dict) -> None:
    """``invoke.yaml`` (or ``.yml``/``.json``) next to ``tasks.py``, checked when tasks.py is
    imported, before invoke merges it: invoke itself would stop with a YAML or merge
    traceback. ``defaults`` is the namespace's configuration (invoke's own is added)."""
    import json

    from invoke import Config

    defaults = {**Config.global_defaults(), **defaults}
    for name in ("invoke.yaml", "invoke.yml", "invoke.json"):
        path = project_dir / name
        if not path.is_file():
            continue
        import yaml  # only when there is a file to read: every task, and `invoke --list`, runs this

        try:
            text = path.read_text(encoding="utf-8")
            data = json.loads(text) if name.endswith(".json") else yaml.safe_load(text)
        except (OSError, UnicodeDecodeError) as exc:
            raise Exit(f"{name}: cannot be read: {exc}", EXIT_FAILURE) from None
        except json.JSONDecodeError as exc:
            raise Exit(f"{name}:{exc.lineno}: not valid JSON: {exc.msg}", EXIT_FAILURE) from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
            problem = getattr(exc, "problem", None) or str(exc)
            raise Exit(f"{where}: not valid YAML: {problem}", EXIT_FAILURE) from None
        if data is None:
            continue
        problem = _unmergeable(defaults, data, "")
        if problem:
            raise Exit(f"{name}: {problem}\n  next step: e.g. db: {{backend: local}}", EXIT_FAILURE)


def _unmergeable(defaults, data, path: str) -> str | None:
    """Where ``data`` puts a value in place of a section invoke's defaults hold, which invoke
    cannot merge."""
    if not isinstance(data, dict):
        return f"{path or 'the top level'} is {type(data).__name__}, not a mapping of settings"
    for key, value in data.items():
        default = defaults.get(key)
        if isinstance(default, dict):
            problem = _unmergeable(default, value, f"{path}.{key}" if path else str(key))
            if problem:
                return problem
    return None


# -- flags -----------------------------------------------------------------------------------

_WHOLE = re.compile(r"\s*[+-]?[0-9]+\s*")  # ASCII digits: int() takes others, and the user meant none


def _whole(text: str) -> int:
    """The number ``_WHOLE`` matched; a longer one than any limit here stays a number (int()
    refuses more than 4,300 digits), too large for every check that follows."""
    digits = text.strip().lstrip("+-").lstrip("0")
    if len(digits) > 18:
        return -(10**18) if text.strip().startswith("-") else 10**18
    return int(text)


def count(flag: str, value, *, default: int) -> int:
    """A whole number >= 1 (``--runs``, ``--bench-runs``)."""
    if value is None:
        return default
    text = str(value)
    if isinstance(value, bool) or not _WHOLE.fullmatch(text):
        raise OptionError(
            f"{flag} {text!r} is not a whole number", hint=f"pass a number of runs, e.g. {flag} {default}"
        )
    number = _whole(text)
    if number < 1:
        raise OptionError(f"{flag} {text!r}: at least 1 run is needed", hint=f"e.g. {flag} {default}")
    if number > MAX_RUNS:
        raise OptionError(
            f"{flag} {text.strip()[:20]!r}: at most {MAX_RUNS} runs", hint=f"e.g. {flag} {default}"
        )
    return number


def sizes(flag: str, value) -> tuple[int, ...]:
    """``--scale``: comma-separated numbers of files, each 1..MAX_SCALE."""
    if value is None:
        return ()
    text = str(value)
    hint = f"comma-separated numbers of migration files, each 1 to {MAX_SCALE}, e.g. {flag}=10,100,1000"
    entries = text.split(",")
    if not text.strip():
        raise OptionError(f"{flag} is empty", hint=hint)
    counts = []
    for entry in entries:
        if not _WHOLE.fullmatch(entry):
            what = "an empty entry" if not entry.strip() else f"{entry.strip()!r} is not a whole number"
            raise OptionError(f"{flag}={text}: {what}", hint=hint)
        number = _whole(entry)
        if not 1 <= number <= MAX_SCALE:
            shown = entry.strip() if len(entry.strip()) <= 20 else entry.strip()[:20] + "…"
            raise OptionError(f"{flag}={text[:60]}: {shown} is outside 1..{MAX_SCALE}", hint=hint)
        counts.append(number)
    return tuple(counts)


def _source(flag: str, given, variable: str, setting: str) -> str:
    return flag if given is not None else f"{variable} (or {setting} in invoke.yaml)"


def connection(backend, dsn, configured_backend, configured_dsn) -> tuple[str, str]:
    """The backend name and DSN from the flags, else from invoke config / ``INVOKE_DB_*``;
    a DSN is checked only when it will be used, and never shown with its password."""
    from leaddb.backends import NAMES  # here, not at import: see the module's docstring

    chosen = backend if backend is not None else configured_backend
    name = str("" if chosen is None else chosen).strip().lower() or "auto"
    if name not in NAMES:
        where = _source("--backend", backend, "INVOKE_DB_BACKEND", "db.backend")
        raise OptionError(f"{where}: unknown backend {chosen!r}", hint=f"choose one of {', '.join(NAMES)}")
    given = dsn if dsn is not None else configured_dsn
    text = "" if given is None else str(given)
    if text and name in ("auto", "dsn"):
        _check_dsn(text, _source("--dsn", dsn, "INVOKE_DB_DSN", "db.dsn"))
    if name in ("auto", "docker"):
        _check_boot_timeout()
    return name, text


_SECONDS = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|min|h)?\s*", re.IGNORECASE)
_UNITS = {"ms": 0.001, "s": 1.0, "min": 60.0, "h": 3600.0}
MAX_WAIT_LIMIT = 86_400.0  # a day: more is a typo, and "no limit" is 0


def wait_limits(lock, statement, configured_lock, configured_statement):
    """``--lock-timeout`` and ``--statement-timeout`` (else invoke config / ``INVOKE_DB_*``):
    seconds, or with a unit (``30s``, ``2min``, ``500ms``); 0 is no limit (``leaddb.waits``)."""
    from leaddb import waits

    lock_s, lock_source = _limit(
        "--lock-timeout",
        lock,
        "INVOKE_DB_LOCK_TIMEOUT",
        "db.lock_timeout",
        configured_lock,
        waits.DEFAULT_LOCK_TIMEOUT,
    )
    statement_s, statement_source = _limit(
        "--statement-timeout",
        statement,
        "INVOKE_DB_STATEMENT_TIMEOUT",
        "db.statement_timeout",
        configured_statement,
        waits.DEFAULT_STATEMENT_TIMEOUT,
    )
    return waits.Limits(
        lock=lock_s, statement=statement_s, lock_source=lock_source, statement_source=statement_source
    )


def _limit(flag: str, given, variable: str, setting: str, configured, default: float) -> tuple[float, str]:
    value = given if given is not None else configured
    if value is None or (isinstance(value, str) and not value.strip()):
        return default, flag
    where = _source(flag, given, variable, setting)
    source = flag if given is not None else where
    text = str(value)
    hint = f"seconds, or with a unit: e.g. {flag} 30, 30s, 2min or 500ms; 0 for no limit"
    found = None if isinstance(value, bool) else _SECONDS.fullmatch(text)
    if found is None:
        raise OptionError(f"{where}: {text.strip()[:40]!r} is not a number of seconds", hint=hint)
    seconds = float(found[1]) * _UNITS[(found[2] or "s").lower()]
    if seconds > MAX_WAIT_LIMIT:
        raise OptionError(
            f"{where}: {text.strip()[:20]!r} is more than a day ({MAX_WAIT_LIMIT:.0f} s)", hint=hint
        )
    return seconds, source


def _check_dsn(text: str, where: str) -> None:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    from leaddb import masking

    try:
        conninfo_to_dict(text)
    except (psycopg.Error, ValueError) as exc:  # ValueError: a %-escape that is not UTF-8
        # libpq quotes what it cannot read; and a word of the password may be one of the hint's
        raise OptionError(
            masking.scrub(f"{where}: not a connection string libpq can read ({str(exc).strip()})", text),
            hint=masking.scrub(
                "e.g. postgresql://user@host:5432/dbname or 'host=… port=… dbname=… user=…'", text
            ),
        ) from None


def _check_boot_timeout() -> None:
    raw = os.environ.get(BOOT_TIMEOUT_ENV)
    if not raw:
        return
    try:
        seconds = float(raw)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0 or seconds == float("inf"):
        raise OptionError(
            f"{BOOT_TIMEOUT_ENV}={raw!r} is not a number of seconds",
            hint=f"unset it, or e.g. {BOOT_TIMEOUT_ENV}=120",
        )


def output_file(flag: str, value, *, create_parents: bool = False) -> Path | None:
    """A file the task will write (``--json``): not a directory; its directory must exist, or
    (``create_parents``, where the task makes it) be creatable."""
    if value is None:
        return None
    text = str(value)
    if not text.strip() or "\0" in text:
        raise OptionError(f"{flag} needs a file name", hint=f"e.g. {flag} results.json")
    path = Path(text)
    try:
        if path.is_dir():
            raise OptionError(
                f"{flag} {text}: is a directory", hint=f"name a file, e.g. {flag} {path / 'out.json'}"
            )
        _check_directory(flag, path.parent, create=create_parents)
    except OSError as exc:
        raise OptionError(f"{flag} {text}: {exc.strerror or exc}") from None
    return path


def output_directory(flag: str, value, *, default: Path) -> Path:
    """A directory the task will create if needed (``--report-dir``)."""
    if value is not None and (not str(value).strip() or "\0" in str(value)):
        raise OptionError(f"{flag} needs a directory name")
    path = Path(str(value)) if value is not None else default
    if value is None and flag.startswith("--"):
        flag = f"{flag} (default {path})"  # the user passed none: say which directory it is
    try:
        _check_directory(flag, path, create=True)
    except OSError as exc:
        raise OptionError(f"{flag} {path}: {exc.strerror or exc}") from None
    return path


def _check_directory(flag: str, path: Path, *, create: bool) -> None:
    """``path`` is a writable directory, or (``create``) can be made one."""
    existing = path
    while not existing.exists() and create and existing != existing.parent:
        existing = existing.parent
    if not existing.exists():
        raise OptionError(
            f"{flag}: the directory {path} does not exist", hint=f"create it first: mkdir {path}"
        )
    if not existing.is_dir():
        what = path if existing == path else f"{existing} (in {path})"
        raise OptionError(f"{flag}: {what} is a file, not a directory", hint="name a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OptionError(
            f"{flag}: the directory {existing} is not writable", hint="choose a writable directory"
        )
