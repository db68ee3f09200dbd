"""The names a project's database may have: never one of the server's own (``postgres``, the
templates), never one the server would cut (NAMEDATALEN). Plain rules, no server and no psycopg,
so a Docker reset checks them before its container starts without loading a driver."""

from __future__ import annotations

from leaddb.errors import BackendError

RESERVED = ("postgres", "template0", "template1")
MAX_NAME_BYTES = 63  # NAMEDATALEN - 1: the server cuts a longer name (startup: at a byte)


def length_problem(name: str) -> str | None:
    """Why the server would not keep ``name`` as it is (too long), or None."""
    size = len(name.encode("utf-8"))
    if size <= MAX_NAME_BYTES:
        return None
    cut = name.encode("utf-8")[:MAX_NAME_BYTES].decode("utf-8", "ignore")
    return (
        f"the name is {size} bytes in UTF-8 and PostgreSQL keeps at most {MAX_NAME_BYTES} "
        f"(NAMEDATALEN - 1): the server would cut it to {cut!r}, a database of another name"
    )


def problem(name: str) -> str | None:
    """Why ``name`` cannot be the project's database, or None: empty, one of the server's own,
    or too long to be kept as it is."""
    if not name:
        return "the name is empty"
    if name in RESERVED:
        what = "maintenance database" if name == "postgres" else "template every new database copies"
        return f"{name!r} is the server's own {what}"
    return length_problem(name)


def check_target(name: str, *, action: str, source: str) -> None:
    """Refuse (BackendError) to ``action`` a database whose name :func:`problem` rejects;
    ``source`` says where the name came from, as the next step names it."""
    found = problem(name)
    if found is not None:
        raise BackendError(
            f"refusing to {action} the {name!r} database: {found}",
            hint=f"set {source} to a database of the project's own (e.g. leadgen), at most "
            f"{MAX_NAME_BYTES} bytes; nothing was changed",
        )


def dbname_of(conninfo: str) -> str:
    """The ``dbname`` a libpq connection string names ("" when none)."""
    from psycopg.conninfo import conninfo_to_dict

    return conninfo_to_dict(conninfo).get("dbname") or ""
