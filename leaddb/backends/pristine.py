"""The user's pristine ``initdb`` output, initialised once and copied per reset
(testing.postgresql's cached initdb): keyed by what makes ``initdb`` write something else,
shared by every checkout, built and removed under the shared directory's lock.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from leaddb import locks, nofollow, permissions, platforms, statedir, tombstones
from leaddb.backends import cluster
from leaddb.backends.cluster import SERVER_USER

INITDB_ARGS = (
    "-U",
    SERVER_USER,
    "-E",
    "UTF8",
    "--locale=C",
    "--auth-local=trust",
    "--auth-host=scram-sha-256",
    "--no-sync",
    "--no-instructions",
)


def _timezone() -> list:
    """What ``initdb`` reads to choose the cluster's timezone (TZ, else the system's)."""
    localtime = Path("/etc/localtime")
    return [os.environ.get("TZ"), os.path.realpath(localtime) if localtime.exists() else None, time.tzname]


def pristine_key(initdb: Path) -> dict:
    """What makes ``initdb`` write something else: the PostgreSQL version (``initdb
    --version``), the binary itself (its resolved path, size and mtime: another build of the
    same version may differ), the arguments (encoding, locale, authentication) and the timezone
    ``initdb`` writes into ``postgresql.conf``."""
    resolved = initdb.resolve()
    st = resolved.stat()
    version = subprocess.run(
        [str(initdb), "--version"], stdin=subprocess.DEVNULL, capture_output=True, text=True
    ).stdout.strip()
    key = {
        "version": version,
        "initdb": [str(resolved), st.st_size, st.st_mtime_ns],
        "args": list(INITDB_ARGS),
        "timezone": _timezone(),
    }
    return json.loads(json.dumps(key, sort_keys=True))  # as key.json reads back (tuples become lists)


class Pristine:
    """One ``initdb`` output, never started, that each reset copies: a new, empty cluster
    without paying ``initdb`` again (testing.postgresql's cached initdb).

    It is the user's, shared by every checkout (``statedir.shared_dir``, on the RAM disk when
    there is room), one per :func:`pristine_key`: a new key builds a new pristine and buries the
    old ones. Copies are made under the shared lock (``statedir.shared_lock``), builds and
    removals under the exclusive one (:func:`shared_pristine`). It is built in a tombstone and
    renamed into place when complete, so an interrupted build leaves only a tombstone. Run as
    root, it is handed back to root after ``initdb`` (the server user never touches it again),
    and each copy is handed to the server user before it is moved into place.
    """

    PREFIX = "pristine-"

    def __init__(self, home: Path, initdb: Path, key: dict) -> None:
        self.home = home
        self.initdb = initdb
        self.key = key
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        self.root = home / f"{self.PREFIX}{digest}"
        self.data = self.root / "data"

    @property
    def ready(self) -> bool:
        try:
            return json.loads(nofollow.read_utf8(self.root / "key.json")) == self.key
        except (OSError, ValueError):
            return False

    @property
    def password(self) -> str:
        """The superuser password ``initdb`` set; each copy replaces it (``Cluster.set_password``)."""
        return nofollow.read_utf8(self.root / "password").strip()

    def build(self) -> None:
        """``initdb`` into a tombstone, moved into place whole; the caller holds the exclusive lock."""
        ids = permissions.server_ids(required=True)
        staging = tombstones.new_tombstone(self.home, "pristine")
        if ids:
            platforms.chown(staging, ids[0], ids[1])  # initdb (as the server user) creates data/ in it
        password = secrets.token_urlsafe(18)
        pwfile = staging / "pwfile"
        fd = nofollow.open_nofollow(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
            out.write(password + "\n")
        if ids:
            platforms.chown(pwfile, ids[0], ids[1])
        try:
            cluster.run_captured(
                [str(self.initdb), "-D", str(staging / "data"), *INITDB_ARGS, f"--pwfile={pwfile}"],
                "initdb",
                120,
                lambda: "",
                **platforms.run_as(SERVER_USER if ids else None),
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if ids:  # back to us: from here on the server user can change nothing a copy is made of
            platforms.chown(staging, *platforms.effective_ids())
            cluster.chown_tree(staging, *platforms.effective_ids())
        for name, text in (("password", password + "\n"), ("key.json", json.dumps(self.key))):
            nofollow.replace_utf8(staging / name, text)
        for entry in self.home.glob(f"{self.PREFIX}*"):  # another key's: stale
            tombstones.remove(entry, self.home)
        platforms.rename(staging, self.root)  # retried on Windows while a scanner holds a file


PRISTINE_WAIT = 180.0  # seconds a task waits for another's pristine build (initdb's own limit: 120)


@contextmanager
def shared_pristine(initdb: Path, cold_phase: Callable[[], AbstractContextManager]) -> Iterator[Pristine]:
    """The user's pristine for ``initdb``, held (the shared lock) while the caller copies it;
    built first under the exclusive lock (timed in ``cold_phase()``) when it is missing or
    stale, after leftovers of an interrupted build are cleared."""
    key = pristine_key(initdb)
    lock = statedir.shared_lock()
    with locks.waiting(lock, shared=True, timeout=PRISTINE_WAIT):
        home = statedir.shared_dir(create=False)
        pristine = Pristine(home, initdb, key) if home is not None else None
        if pristine is not None and pristine.ready:
            yield pristine
            return
    with locks.waiting(lock, timeout=PRISTINE_WAIT):
        home = statedir.shared_dir(create=True)
        pristine = Pristine(home, initdb, key)
        if not pristine.ready:  # still: no other task built it while this one waited
            with cold_phase():
                tombstones.clear_tombstones(home)
                pristine.build()
        yield pristine


def drop_pristines() -> Path | None:
    """Remove every pristine of the user's (the next reset of any checkout runs ``initdb``);
    the shared directory it was in, or None when there was none."""
    with locks.waiting(statedir.shared_lock(), timeout=PRISTINE_WAIT):
        home = statedir.shared_dir(create=False)
        if home is None:
            return None
        for entry in home.glob(f"{Pristine.PREFIX}*"):
            tombstones.remove(entry, home)
        tombstones.clear_tombstones(home)
        return home
