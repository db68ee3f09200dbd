"""What belongs to a database rather than to its schema, on a server that is not ours.

A database's own properties: its row of ``pg_database`` (owner, encoding and locale, locale
provider and ICU locale, tablespace, connection limit, whether it takes connections, its
ACL), its settings (``ALTER DATABASE … SET``, and ``ALTER ROLE … IN DATABASE … SET`` per
role), its comment and its security labels. A DSN reset builds a new database and swaps it in
for the old one: it reads these from the old one, gives them to the new one, and compares the
two; whatever it cannot carry over is named and the reset refused while the old database is
still untouched. Also what keeps a database busy (sessions, prepared transactions,
replication slots, subscriptions), each named for people.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql

from leaddb import janitor, runner

# pg_database columns that are not a property to carry: identity, bookkeeping, or compared by
# name below (owner, tablespace, ACL). The collation version is the server's library's, which a
# new database gets afresh.
_NOT_CARRIED = {
    "oid",
    "datname",
    "datdba",
    "dattablespace",
    "datacl",
    "datfrozenxid",
    "datminmxid",
    "datcollversion",
}
# settings whose value is a list of names: each is quoted on its own (as pg_dump does)
_LIST_SETTINGS = {
    "local_preload_libraries",
    "search_path",
    "session_preload_libraries",
    "shared_preload_libraries",
    "temp_tablespaces",
    "unix_socket_directories",
}

FACTS = """
SELECT d.datname, d.oid, to_jsonb(d) AS row, pg_get_userbyid(d.datdba) AS owner,
       pg_encoding_to_char(d.encoding) AS encoding, t.spcname AS tablespace,
       shobj_description(d.oid, 'pg_database') AS comment, pg_has_role(d.datdba, 'USAGE') AS may_drop,
       (SELECT coalesce(jsonb_object_agg(coalesce(r.rolname, ''), s.setconfig), '{}')
        FROM pg_db_role_setting s LEFT JOIN pg_roles r ON r.oid = s.setrole
        WHERE s.setdatabase = d.oid) AS settings,
       CASE WHEN d.datacl IS NOT NULL THEN
         (SELECT coalesce(jsonb_agg(jsonb_build_array(pg_get_userbyid(a.grantor),
                  CASE WHEN a.grantee = 0 THEN '' ELSE pg_get_userbyid(a.grantee) END,
                  a.privilege_type, a.is_grantable)), '[]')
          FROM aclexplode(d.datacl) a)
       END AS acl,
       (SELECT coalesce(jsonb_agg(jsonb_build_array(l.provider, l.label)), '[]')
        FROM pg_seclabels l WHERE l.objtype = 'database' AND l.objoid = d.oid) AS labels
FROM pg_database d JOIN pg_tablespace t ON t.oid = d.dattablespace
WHERE d.datname = ANY(%s)
"""


@dataclass(frozen=True)
class Facts:
    name: str
    oid: int
    row: dict
    owner: str
    encoding: str
    tablespace: str
    comment: str | None
    may_drop: bool
    settings: dict  # role ('' for every role) -> the setting strings, "name=value"
    acl: frozenset | None  # (grantor, grantee ('' for PUBLIC), privilege, grantable); None: the default
    labels: frozenset  # (provider, label)

    @property
    def template(self) -> bool:
        return bool(self.row.get("datistemplate"))

    def properties(self) -> dict[str, object]:
        """Everything a rebuilt database must have as this one has it, by name for people."""
        found: dict[str, object] = {
            "owner": self.owner,
            "encoding": self.encoding,
            "tablespace": self.tablespace,
            "comment": user_comment(self.comment),
            "ACL": _acl_text(self.acl),
            "security labels": sorted(self.labels),
        }
        for key, value in sorted(self.row.items()):
            if key not in _NOT_CARRIED and key != "encoding":
                found[key] = value
        for role, items in sorted(self.settings.items()):
            where = "ALTER DATABASE … SET" if not role else f"ALTER ROLE {role} IN DATABASE … SET"
            for item in items:
                name = item.partition("=")[0]
                found[f"setting {name} ({where})"] = item.partition("=")[2]
        return found


def _acl_text(acl: frozenset | None) -> str:
    if acl is None:
        return "the default (CONNECT and TEMPORARY for PUBLIC, everything for the owner)"
    if not acl:
        return "no privilege for anyone"
    return ", ".join(
        f"{privilege}{' WITH GRANT OPTION' if grantable else ''} to {grantee or 'PUBLIC'} (by {grantor})"
        for grantor, grantee, privilege, grantable in sorted(acl)
    )


def _json(value):
    return json.loads(value) if isinstance(value, str) else value


def read(conn: psycopg.Connection, names: list[str]) -> dict[str, Facts]:
    found = {}
    for name, oid, row, owner, encoding, tablespace, comment, may_drop, settings, acl, labels in conn.execute(
        FACTS, (names,)
    ):
        acl = _json(acl)
        found[name] = Facts(
            name=name,
            oid=int(oid),
            row=_json(row),
            owner=owner,
            encoding=encoding,
            tablespace=tablespace,
            comment=comment,
            may_drop=may_drop,
            settings={role: tuple(items) for role, items in _json(settings).items()},
            acl=None if acl is None else frozenset(tuple(item) for item in acl),
            labels=frozenset(tuple(item) for item in _json(labels)),
        )
    return found


def user_comment(comment: str | None) -> str:
    """The comment without this tool's mark (or an earlier version's whole-comment mark)."""
    head, mark = janitor.split_comment(comment)
    if mark is None and comment == LEGACY_MARK:
        return ""
    return head if mark is not None else (comment or "")


# What an earlier version of the tool wrote as the whole comment of the databases it made:
# not tied to one database, so only ever honoured for the database the DSN itself names.
LEGACY_MARK = "leaddb scratch database: safe to drop with invoke db.reset"


# -- what keeps a database busy ----------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    pid: int
    database: str
    role: str | None
    application: str | None
    since: datetime | None
    transaction_since: datetime | None
    may_end: bool

    @property
    def ours(self) -> bool:
        """A session of this tool's (its application name): one a killed run left behind, where
        no run of ours can be (a database only a reset uses, under the reset's lock)."""
        return (self.application or "").startswith(runner.APPLICATION_PREFIX)

    def describe(self) -> str:
        parts = [f"role {self.role!r}"]
        if self.application:
            parts.append(f"application {self.application!r}")
        if self.since:
            parts.append(f"connected since {_when(self.since)}")
        if self.transaction_since:
            parts.append(f"in a transaction since {_when(self.transaction_since)}")
        return f"pid {self.pid} ({', '.join(parts)})"


def _when(moment: datetime) -> str:
    return moment.isoformat(sep=" ", timespec="seconds")


# Sessions of a role (autovacuum workers have none: the rename and the drop end those
# themselves). Whether this role may end one is pg_terminate_backend's own rule (PostgreSQL 15):
# a superuser any; else not a superuser's, and only of a role whose privileges it has, or with
# pg_signal_backend. Other roles' sessions show no times (pg_stat_activity hides them).
SESSIONS = """
SELECT a.pid, a.datname, a.usename, nullif(a.application_name, ''), a.backend_start, a.xact_start,
       (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
       OR (NOT coalesce((SELECT rolsuper FROM pg_roles WHERE oid = a.usesysid), true)
           AND (pg_has_role(a.usesysid, 'USAGE') OR pg_has_role('pg_signal_backend', 'USAGE')))
FROM pg_stat_activity a
WHERE a.datname = ANY(%s) AND a.usesysid IS NOT NULL AND a.pid <> pg_backend_pid()
ORDER BY a.datname, a.pid
"""


def sessions(conn: psycopg.Connection, names: list[str]) -> list[Session]:
    return [Session(*row) for row in conn.execute(SESSIONS, (names,))]


def blockers(conn: psycopg.Connection, names: list[str]) -> list[str]:
    """What keeps a database from being renamed or dropped that a reset must not end: prepared
    transactions (someone's data, waiting for COMMIT PREPARED), logical replication slots and
    subscriptions (someone's replication). Each named, for people."""
    found = []
    for gid, owner, prepared, database in conn.execute(
        "SELECT gid, owner, prepared, database FROM pg_prepared_xacts WHERE database = ANY(%s) ORDER BY 4, 1",
        (names,),
    ):
        found.append(
            f"prepared transaction {gid!r} of role {owner!r} on {database!r} (prepared {_when(prepared)}): "
            "COMMIT PREPARED or ROLLBACK PREPARED it first"
        )
    for slot, active, database in conn.execute(
        "SELECT slot_name, active, database FROM pg_replication_slots WHERE database = ANY(%s) ORDER BY 3, 1",
        (names,),
    ):
        state = "active" if active else "inactive"
        found.append(f"logical replication slot {slot!r} ({state}) of {database!r}: a reset would break it")
    for subscription, database in conn.execute(
        "SELECT s.subname, d.datname FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid "
        "WHERE d.datname = ANY(%s) ORDER BY 2, 1",
        (names,),
    ):
        found.append(f"subscription {subscription!r} in {database!r}: a reset would drop it")
    return found


# -- carrying the properties over --------------------------------------------------------------


def uncarriable(conn: psycopg.Connection, old: Facts) -> list[str]:
    """What this role could not give a rebuilt ``old``, found before anything is created: a
    tablespace it may not create in, settings only a superuser (or a grant) may set, settings of
    other roles it may not alter, privileges granted by a role it cannot act as."""
    problems = []
    (superuser, createrole, me) = conn.execute(
        "SELECT rolsuper, rolcreaterole, rolname FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    if superuser:
        return []
    default_space = conn.execute(
        "SELECT t.spcname FROM pg_database d JOIN pg_tablespace t ON t.oid = d.dattablespace "
        "WHERE d.datname = 'template0'"
    ).fetchone()[0]
    if (
        old.tablespace != default_space
        and not conn.execute("SELECT has_tablespace_privilege(%s, 'CREATE')", (old.tablespace,)).fetchone()[0]
    ):
        problems.append(
            f"its tablespace {old.tablespace!r}: role {me!r} may not create a database there "
            "(no CREATE on it)"
        )
    for role, items in old.settings.items():
        if role and role != me:
            target_super = conn.execute(
                "SELECT rolsuper FROM pg_roles WHERE rolname = %s", (role,)
            ).fetchone()
            if not createrole or (target_super and target_super[0]):
                problems.append(
                    f"the settings of role {role!r} in it ({', '.join(items)}; ALTER ROLE … IN DATABASE … "
                    f"SET): role {me!r} may not set them (a superuser may; so may CREATEROLE, for a role "
                    "that is not a superuser)"
                )
                continue
        for item in items:
            name = item.partition("=")[0]
            settable = conn.execute(
                "SELECT EXISTS (SELECT FROM pg_settings WHERE name = lower(%s) AND context = 'user') "
                "OR has_parameter_privilege(%s, 'SET')",
                (name, name),
            ).fetchone()[0]
            if not settable:
                problems.append(
                    f"its setting {item!r}: only a superuser (or a role granted SET on {name}) may set it"
                )
    for grantor in sorted({g for g, *_ in old.acl or ()} - {old.owner}):
        if not conn.execute("SELECT pg_has_role(%s, 'MEMBER')", (grantor,)).fetchone()[0]:
            granted = [f"{p} to {g or 'PUBLIC'}" for by, g, p, _ in sorted(old.acl) if by == grantor]
            problems.append(
                f"the privileges role {grantor!r} granted on it ({', '.join(granted)}): role {me!r} cannot "
                "grant them as that role"
            )
    return problems


def create_like(conn: psycopg.Connection, name: str, old: Facts | None) -> None:
    """``CREATE DATABASE name`` from template0 with ``old``'s owner, encoding, locale and
    tablespace (the server's defaults when there is no old one)."""
    query = sql.SQL("CREATE DATABASE {} WITH TEMPLATE template0").format(sql.Identifier(name))
    if old is not None:
        row = old.row
        parts = [
            sql.SQL("OWNER {}").format(sql.Identifier(old.owner)),
            sql.SQL("ENCODING {}").format(sql.Literal(old.encoding)),
            sql.SQL("LC_COLLATE {} LC_CTYPE {}").format(
                sql.Literal(row["datcollate"]), sql.Literal(row["datctype"])
            ),
        ]
        provider = {"c": "libc", "i": "icu", "b": "builtin"}.get(row.get("datlocprovider") or "c", "libc")
        parts.append(sql.SQL("LOCALE_PROVIDER {}").format(sql.SQL(provider)))
        locale = row.get("daticulocale") or row.get("datlocale")  # PostgreSQL 15-16; 17
        if locale and provider != "libc":
            option = "ICU_LOCALE" if provider == "icu" else "BUILTIN_LOCALE"
            parts.append(sql.SQL(f"{option} {{}}").format(sql.Literal(locale)))
        if row.get("daticurules"):  # PostgreSQL 16
            parts.append(sql.SQL("ICU_RULES {}").format(sql.Literal(row["daticurules"])))
        default_space = conn.execute(
            "SELECT t.spcname FROM pg_database d JOIN pg_tablespace t ON t.oid = d.dattablespace "
            "WHERE d.datname = 'template0'"
        ).fetchone()[0]
        if old.tablespace != default_space:
            parts.append(sql.SQL("TABLESPACE {}").format(sql.Identifier(old.tablespace)))
        query = sql.SQL(" ").join([query, *parts])
    conn.execute(query)


def split_list(value: str) -> list[str]:
    """A list setting's stored value as its elements (PostgreSQL's SplitGUCList, as pg_dump
    reads it): comma-separated, each trimmed, double-quoted ones unquoted ("" is a quote)."""
    items, i, n = [], 0, len(value)
    while i < n:
        while i < n and value[i].isspace():
            i += 1
        if i < n and value[i] == '"':
            i += 1
            item = []
            while i < n:
                if value[i] == '"':
                    if i + 1 < n and value[i + 1] == '"':
                        item.append('"')
                        i += 2
                        continue
                    i += 1
                    break
                item.append(value[i])
                i += 1
            items.append("".join(item))
        else:
            start = i
            while i < n and value[i] != ",":
                i += 1
            items.append(value[start:i].strip())
        while i < n and value[i].isspace():
            i += 1
        if i < n and value[i] == ",":
            i += 1
            if i >= n:
                items.append("")
    return items


def setting_value(name: str, value: str) -> sql.Composable:
    """The value of a stored ``name=value`` setting as ``SET … TO`` takes it back."""
    if name.lower() in _LIST_SETTINGS:
        return sql.SQL(", ").join(sql.Literal(item) for item in split_list(value))
    return sql.Literal(value)


def carry(conn: psycopg.Connection, name: str, old: Facts) -> list[str]:
    """Give database ``name`` (just built, owned as ``old`` is) ``old``'s ACL, settings,
    security labels, connection limit and ``ALLOW_CONNECTIONS``: the properties that would keep
    the reset itself out while it builds. What the server refuses, each with its reason."""
    failed = []
    target = sql.Identifier(name)

    def run(query: sql.Composable, what: str) -> bool:
        try:
            conn.execute(query)
            return True
        except psycopg.Error as exc:
            failed.append(f"{what}: {' '.join(str(exc).split())}")
            return False

    if old.acl is not None:
        run(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(target), "the ACL")
        run(sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(target, sql.Identifier(old.owner)), "the ACL")
        # the owner's grants first: another grantor may need a grant option from them
        for grantor, grantee, privilege, grantable in sorted(old.acl, key=lambda a: (a[0] != old.owner, a)):
            query = sql.SQL("GRANT {} ON DATABASE {} TO {}{}").format(
                sql.SQL(privilege),
                target,
                sql.Identifier(grantee) if grantee else sql.SQL("PUBLIC"),
                sql.SQL(" WITH GRANT OPTION" if grantable else ""),
            )
            what = f"{privilege} to {grantee or 'PUBLIC'} (granted by {grantor})"
            if grantor == old.owner:
                run(query, what)
                continue
            if run(sql.SQL("SET ROLE {}").format(sql.Identifier(grantor)), what):
                try:
                    run(query, what)
                finally:
                    conn.execute("RESET ROLE")
    for role, items in sorted(old.settings.items()):
        for item in items:
            setting, _, value = item.partition("=")
            head = (
                sql.SQL("ALTER ROLE {} IN DATABASE {}").format(sql.Identifier(role), target)
                if role
                else sql.SQL("ALTER DATABASE {}").format(target)
            )
            where = f" for role {role}" if role else ""
            run(
                sql.SQL("{} SET {} TO {}").format(
                    head, sql.Identifier(setting), setting_value(setting, value)
                ),
                f"setting {item!r}{where}",
            )
    for provider, label in sorted(old.labels):
        run(
            sql.SQL("SECURITY LABEL FOR {} ON DATABASE {} IS {}").format(
                sql.Identifier(provider), target, sql.Literal(label)
            ),
            f"security label of {provider}",
        )
    run(
        sql.SQL("ALTER DATABASE {} WITH CONNECTION LIMIT {} ALLOW_CONNECTIONS {}").format(
            target,
            sql.Literal(int(old.row["datconnlimit"])),
            sql.SQL("true" if old.row.get("datallowconn", True) else "false"),
        ),
        "the connection limit and ALLOW_CONNECTIONS",
    )
    return failed


def lost(old: Facts, new: Facts) -> list[str]:
    """What ``new`` does not have as ``old`` has it, one line each."""
    have, want = new.properties(), old.properties()
    lines = []
    for key in sorted(set(have) | set(want)):
        if have.get(key) != want.get(key):
            lines.append(f"{key}: {_shown(want.get(key))} (the rebuilt one: {_shown(have.get(key))})")
    return lines


def _shown(value) -> str:
    if value is None or value == "":
        return "none"
    return repr(value) if isinstance(value, str) else str(value)
