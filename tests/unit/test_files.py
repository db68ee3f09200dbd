"""A migration file is a regular file of the migrations directory, read without following a link,
and a message quotes no more of it than its rule needs (issue 17, section 4: a committed
``0008_x.sql -> /proc/self/environ`` put PGPASSWORD into db.lint's error)."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest
from unit_support import DECLARATION, SPEC_HEAD, compliant, printed

from leaddb import migrations, platforms, rules, verdict
from leaddb.errors import MigrationPathUnspecified
from leaddb.rules import RulesBroken

FIRST = "0001_first.sql"
SECRET = "PGPASSWORD=correct-horse-battery-staple"
POSIX = pytest.mark.posix_only("POSIX file kinds (sockets, links without a privilege)")


def project_with(make_project, **extra) -> Path:
    """A project of one good file; ``extra``: more files by name (str or bytes)."""
    return make_project({FIRST: compliant(FIRST), **extra})


def refusals(project: Path) -> list[str]:
    with pytest.raises(RulesBroken) as err:
        verdict.load(project)
    return [v.describe() for v in err.value.violations]


def message(project: Path) -> str:
    with pytest.raises(RulesBroken) as err:
        verdict.load(project)
    return str(err.value)


@pytest.fixture
def secret_file(tmp_path_factory) -> Path:
    """A file outside the project holding a secret, shaped like a migration."""
    path = tmp_path_factory.mktemp("elsewhere") / "environ"
    path.write_text(f"-- migration: api/db/migrations/0002_x.sql\n{SECRET}\n", encoding="utf-8", newline="\n")
    return path


# -- links, special files, other names -----------------------------------------------------------


@POSIX
@pytest.mark.parametrize("target", ["/proc/self/environ", "outside", "inside"])
def test_a_symlinked_migration_is_refused_and_never_read(make_project, secret_file, target):
    project = project_with(make_project)
    link = project / "api/db/migrations/0002_x.sql"
    if target == "outside":
        target = str(secret_file)
    elif target == "inside":  # a link to a file of the directory itself is still a link
        target = FIRST
    link.symlink_to(target)
    text = message(project)
    assert refusals(project) == [
        'api/db/migrations/0002_x.sql: rule "naming": is a symbolic link: a migration file is a '
        "regular file of the directory itself, never read through a link"
    ]
    assert "PGPASSWORD" not in text and "horse" not in text
    assert "replace the link with the file itself, or remove it" in text


@POSIX
def test_a_dangling_link_and_a_link_to_a_directory_are_links_too(make_project, tmp_path):
    project = project_with(make_project)
    (project / "api/db/migrations/0002_x.sql").symlink_to(tmp_path / "nowhere")
    (project / "api/db/migrations/0003_y.sql").symlink_to(tmp_path)
    found = refusals(project)
    assert len(found) == 2 and all('rule "naming": is a symbolic link' in r for r in found)


@pytest.mark.posix_only("FIFOs and device nodes are POSIX's (os.mkfifo, os.mknod)")
def test_a_fifo_named_like_a_migration_is_refused_without_waiting_for_a_writer(make_project):
    project = project_with(make_project)
    os.mkfifo(project / "api/db/migrations/0002_x.sql")
    assert refusals(project) == ['api/db/migrations/0002_x.sql: rule "naming": not a regular file (a FIFO)']


@POSIX
def test_a_socket_named_like_a_migration_is_refused(make_project, monkeypatch):
    project = project_with(make_project)
    path = project / "api/db/migrations/0002_x.sql"
    # bound by its name from its directory: a whole path under pytest's temp directory (an xdist
    # worker's is longer) can pass AF_UNIX's 108 bytes
    monkeypatch.chdir(path.parent)
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(path.name)
        monkeypatch.undo()
        assert refusals(project) == [
            'api/db/migrations/0002_x.sql: rule "naming": not a regular file (a socket)'
        ]


@pytest.mark.posix_only("FIFOs and device nodes are POSIX's (os.mkfifo, os.mknod)")
def test_a_device_named_like_a_migration_is_refused(make_project):
    project = project_with(make_project)
    path = project / "api/db/migrations/0002_x.sql"
    try:
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))  # /dev/null's numbers
    except PermissionError:
        pytest.skip("making a device needs root")
    assert refusals(project) == [
        'api/db/migrations/0002_x.sql: rule "naming": not a regular file (a device or other special file)'
    ]


def test_a_hard_link_is_refused_whichever_name_is_outside(make_project, secret_file):
    """A file with another name can be changed through it from outside the directory (or, as
    root, be a file of someone else's: /etc/shadow on the same file system)."""
    project = project_with(make_project)
    inside = project / "api/db/migrations/0002_x.sql"
    try:
        os.link(secret_file, inside)
    except OSError:
        pytest.skip("no hard links across these directories")
    text = message(project)
    assert refusals(project) == [
        'api/db/migrations/0002_x.sql: rule "naming": has 2 hard links: a migration file has no other '
        "name, through which it could be changed from outside the directory"
    ]
    assert "horse" not in text


def test_a_file_beyond_the_size_bound_is_refused_unread(make_project, monkeypatch):
    monkeypatch.setattr(migrations, "MAX_FILE_BYTES", 120)
    project = project_with(make_project, **{"0002_x.sql": compliant("0002_x.sql", "-- " + "x" * 100 + "\n")})
    assert refusals(project) == [
        'api/db/migrations/0002_x.sql: rule "naming": is 162 bytes, more than a migration file may hold '
        "(120 bytes)"
    ]


def test_a_file_swapped_between_lstat_and_open_is_not_read(make_project, monkeypatch, secret_file):
    """What lstat saw must be what was opened: another file put in its place is refused unread."""
    project = project_with(make_project, **{"0002_x.sql": compliant("0002_x.sql")})
    real = migrations._Directory.lstat

    def stale(self, name):
        return real(self, name) if name == FIRST else os.stat(secret_file)

    monkeypatch.setattr(migrations._Directory, "lstat", stale)
    assert refusals(project) == [
        'api/db/migrations/0002_x.sql: rule "naming": was replaced while it was read: read nothing of it'
    ]


@POSIX
def test_a_link_put_in_place_after_lstat_is_not_followed(make_project, monkeypatch, secret_file):
    """O_NOFOLLOW: the open itself refuses the link (ELOOP), whatever lstat saw before."""
    project = project_with(make_project, **{"0002_x.sql": compliant("0002_x.sql")})
    real = migrations._Directory.read

    def swap_then_read(self, name, seen):
        if name == "0002_x.sql":
            path = project / "api/db/migrations" / name
            path.unlink()
            path.symlink_to(secret_file)
        return real(self, name, seen)

    monkeypatch.setattr(migrations._Directory, "read", swap_then_read)
    (found,) = refusals(project)
    assert found.startswith('api/db/migrations/0002_x.sql: rule "naming": cannot be read: ')
    assert "horse" not in found


@POSIX
@pytest.mark.parametrize("descriptors", [True, False], ids=["directory descriptor", "by path (Windows)"])
def test_both_ways_of_reading_refuse_links_and_read_files(
    make_project, monkeypatch, descriptors, secret_file
):
    """Without directory descriptors (Windows) files are opened by path; lstat, then fstat of
    what was opened, keep the same guarantees."""
    if not descriptors:
        monkeypatch.setattr(platforms, "DIRECTORY_READ", None)
    project = project_with(make_project, **{"0002_x.sql": compliant("0002_x.sql")})
    assert [m.name for m in verdict.load(project)] == [FIRST, "0002_x.sql"]
    (project / "api/db/migrations/0003_y.sql").symlink_to(secret_file)
    assert refusals(project)[0].startswith('api/db/migrations/0003_y.sql: rule "naming": is a symbolic link')


def test_a_directory_named_like_a_migration_is_never_opened_as_a_file(make_project):
    project = project_with(make_project)
    (project / "api/db/migrations/0002_x.sql").mkdir()
    assert refusals(project) == [
        'api/db/migrations/0002_x.sql: rule "naming": not a regular file (a directory)'
    ]


@POSIX
def test_an_unreadable_file_is_one_violation_not_a_crash(make_project, monkeypatch):
    project = project_with(make_project, **{"0002_x.sql": compliant("0002_x.sql")})

    def denied(self, name, seen):
        return "cannot be read: Permission denied"

    monkeypatch.setattr(migrations._Directory, "read", denied)
    assert refusals(project)[0] == (
        'api/db/migrations/0001_first.sql: rule "naming": cannot be read: Permission denied'
    )


@POSIX
def test_an_unlistable_directory_is_one_violation(make_project, monkeypatch):
    def refuse(path, flags=None):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(migrations, "_Directory", refuse)
    assert refusals(project_with(make_project)) == [
        'api/db/migrations: rule "naming": cannot be read: Permission denied'
    ]


def test_an_unsearchable_directory_is_one_violation_not_one_per_printed_block(make_project, monkeypatch):
    """As for a user who cannot search the directory: listing it and looking up a name in it both
    fail; the blocks the spec prints are not then each reported as a missing file."""
    project = project_with(make_project)
    directory = project / "api/db/migrations"
    real_lstat = os.lstat

    def refuse(path, flags=None):
        raise PermissionError(13, "Permission denied")

    def lstat(path, *args, **kwargs):
        if Path(path).parent == directory:
            raise PermissionError(13, "Permission denied", str(path))
        return real_lstat(path, *args, **kwargs)

    monkeypatch.setattr(migrations, "_Directory", refuse)
    monkeypatch.setattr(migrations.os, "lstat", lstat)
    assert refusals(project) == ['api/db/migrations: rule "naming": cannot be read: Permission denied']


def test_a_printed_file_is_missing_only_when_the_directory_surely_lacks_it(tmp_path, monkeypatch):
    (tmp_path / "0001_x.sql").write_bytes(b"")
    assert migrations.present(tmp_path, "0001_x.sql")
    assert not migrations.present(tmp_path, "0002_y.sql")
    assert not migrations.present(tmp_path / "0001_x.sql", "below.sql")  # NotADirectoryError

    def denied(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(migrations.os, "lstat", denied)
    assert migrations.present(tmp_path, "0002_y.sql")  # cannot tell: not reported missing


def test_hidden_files_are_never_opened(make_project, monkeypatch):
    opened = []
    real = migrations._Directory.read
    monkeypatch.setattr(
        migrations._Directory, "read", lambda self, n, s: opened.append(n) or real(self, n, s)
    )
    project = project_with(make_project, **{".0002_secret.sql": SECRET, "notes.txt": SECRET})
    assert refusals(project)[0].startswith('api/db/migrations/notes.txt: rule "naming": not a migration')
    assert opened == [FIRST]


@pytest.mark.parametrize(
    ("stat_fields", "link"),
    [
        ({"st_mode": stat.S_IFLNK | 0o777}, True),
        ({"st_mode": stat.S_IFDIR | 0o755, "st_reparse_tag": 0xA0000003}, True),  # a junction
        ({"st_mode": stat.S_IFREG | 0o644, "st_reparse_tag": 0xA000000C}, True),  # a Windows symlink
        ({"st_mode": stat.S_IFREG | 0o644, "st_reparse_tag": 0x9000001A}, False),  # OneDrive: a file
        ({"st_mode": stat.S_IFREG | 0o644}, False),
    ],
)
def test_is_link_knows_windows_reparse_points(stat_fields, link):
    class Seen:
        st_reparse_tag = 0

    seen = Seen()
    for name, value in stat_fields.items():
        setattr(seen, name, value)
    assert platforms.is_link(seen) is link


# -- the directory itself ----------------------------------------------------------------------------


@POSIX
def test_a_symlinked_migrations_directory_is_refused(make_project, tmp_path_factory):
    project = project_with(make_project)
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (project / "api/db/migrations").rename(elsewhere / "migrations")
    (project / "api/db/migrations").symlink_to(elsewhere / "migrations")
    with pytest.raises(MigrationPathUnspecified) as err:
        verdict.load(project)
    assert "the declared migrations directory `api/db/migrations` is a symbolic link" in str(err.value)


@POSIX
def test_a_symlinked_parent_of_the_migrations_directory_is_refused(make_project, tmp_path_factory):
    project = project_with(make_project)
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (project / "api").rename(elsewhere / "api")
    (project / "api").symlink_to(elsewhere / "api")
    with pytest.raises(MigrationPathUnspecified) as err:
        verdict.load(project)
    assert "`api/db/migrations` is reached through `api`, a symbolic link" in str(err.value)


@pytest.mark.parametrize("declared", ["../elsewhere", "api/../../elsewhere", "/etc"])
def test_a_declared_directory_outside_the_project_is_refused(make_project, declared):
    spec = SPEC_HEAD + DECLARATION.replace("api/db/migrations", declared)
    source = declared if declared.startswith(("/", ".")) else f"./{declared}"
    compose = f"services:\n  postgres:\n    volumes:\n      - {source}:/docker-entrypoint-initdb.d:ro\n"
    project = make_project(spec=spec, compose=compose)
    with pytest.raises(MigrationPathUnspecified) as err:
        migrations.resolve_directory(project)
    assert f"the declared migrations directory `{declared}` is outside the project" in str(err.value)
    assert err.value.hint.startswith(
        'declare it once in the spec ("- Migrations directory: `api/db/migrations`"'
    )


def test_a_project_reached_through_a_link_is_fine(make_project, tmp_path_factory):
    """Only the parts below the project are the project's: where the user keeps it is theirs."""
    project = project_with(make_project)
    alias = tmp_path_factory.mktemp("alias") / "project"
    try:
        alias.symlink_to(project, target_is_directory=True)
    except OSError:
        pytest.skip("no symbolic links here")
    assert [m.name for m in verdict.load(alias)] == [FIRST]


# -- what a message quotes of a file -------------------------------------------------------------------


def test_a_long_secret_line_is_quoted_no_further_than_the_excerpt(make_project):
    long_line = "CREATE TABLE IF NOT EXISTS t (id int) -- " + SECRET * 5
    project = make_project({FIRST: long_line + "\n"}, print_files=False)
    text = message(project)
    assert "correct-horse" not in text
    assert all(len(line) < 400 for line in text.splitlines())


def test_an_unclosed_string_does_not_quote_the_rest_of_the_file(make_project):
    """PostgreSQL's parser quotes everything after an unterminated quote in its message."""
    body = "CREATE TABLE t (x text DEFAULT 'oops);\n-- " + SECRET + "\n"
    project = make_project({FIRST: compliant(FIRST, body)})
    (found,) = refusals(project)
    assert found.startswith(f'api/db/migrations/{FIRST}:3: rule "plain SQL": syntax error: unterminated')
    assert "horse" not in found and len(found) < 300


def test_a_header_of_any_length_is_quoted_cut(make_project):
    header = "-- migration: " + "x" * 5000
    project = make_project(
        {FIRST: compliant(FIRST).replace(f"-- migration: api/db/migrations/{FIRST}", header)}
    )
    found = refusals(project)[0]
    assert found.startswith(f'api/db/migrations/{FIRST}:1: rule "header": the header is `-- migration: xxx')
    assert len(found) < 300


@pytest.mark.parametrize(
    ("char", "kind"),
    [
        ("\0", "a control character (U+0000)"),
        ("\x1b", "a control character (U+001B)"),
        ("\x7f", "a control character (U+007F)"),
        ("\x85", "a control character (U+0085)"),
        ("\u202e", "an invisible or bidirectional control character (U+202E)"),
        ("\u2066", "an invisible or bidirectional control character (U+2066)"),
        ("\u200b", "an invisible or bidirectional control character (U+200B)"),
        ("\ufeff", "an invisible or bidirectional control character (U+FEFF)"),
    ],
)
def test_binary_or_hidden_characters_stop_the_reading_and_are_never_quoted(make_project, char, kind):
    """NUL would end the parser's reading there (psql reads on); ESC writes to the terminal;
    bidirectional controls show the text in another order than it runs."""
    body = f"CREATE TABLE IF NOT EXISTS t (id int); -- {char}{SECRET}\nDROP TABLE t;\n"
    project = make_project({FIRST: compliant(FIRST, body)})
    assert refusals(project) == [f'api/db/migrations/{FIRST}:3: rule "text": {kind}: not plain text']
    assert "horse" not in message(project)


def test_every_description_is_bounded_and_printable():
    found = rules.Violation("f\x1b[31m.sql", 1, rules.TEXT, "x" * 10_000 + "\x1b[2J")
    described = found.describe()
    assert "\x1b" not in described and len(described) < rules.MAX_WHAT + 100


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("SELECT 1", "SELECT 1"),
        ("a\x00b\x1bc", "a?b?c"),
        ("\u202eevil", "?evil"),
        ("x" * 70, "x" * 58 + " …"),
        ("first\nsecond", "first …"),
    ],
)
def test_excerpt_is_one_printable_line_cut(text, shown):
    assert rules.excerpt(text) == shown


def test_printed_helper_prints_what_the_rule_reads():
    """The fixture's spec (unit_support.printed) prints each file as the rule expects."""
    spec = printed({FIRST: compliant(FIRST)})
    assert f"```sql\n{compliant(FIRST)}```" in spec


# -- every refusal's line, rule, description and next step ------------------------------------------


def described(project: Path) -> list[tuple[str, int, str, str, str]]:
    with pytest.raises(RulesBroken) as err:
        verdict.load(project)
    return [(v.file, v.line, v.rule, v.what, v.next_step) for v in err.value.violations]


UNREADABLE = (
    "check its permissions (and those of the directories above it) for the user you run as, "
    "or restore it (git checkout -- FILE restores a committed one)"
)


@pytest.mark.posix_only("FIFOs and device nodes are POSIX's (os.mkfifo, os.mknod)")
def test_each_kind_of_entry_is_refused_with_its_next_step_and_the_scan_goes_on(make_project, secret_file):
    project = project_with(
        make_project, **{"0005_big.sql": compliant("0005_big.sql", "-- " + "x" * 200 + "\n")}
    )
    directory = project / "api/db/migrations"
    (directory / "0002_link.sql").symlink_to(secret_file)
    os.mkfifo(directory / "0003_fifo.sql")
    os.link(secret_file, directory / "0004_hard.sql")
    rules_max = migrations.MAX_FILE_BYTES
    try:
        migrations.MAX_FILE_BYTES = 200
        found = described(project)
    finally:
        migrations.MAX_FILE_BYTES = rules_max
    assert found == [
        (
            "api/db/migrations/0002_link.sql",
            0,
            "naming",
            "is a symbolic link: a migration file is a regular file of the directory itself, never read "
            "through a link",
            "replace the link with the file itself, or remove it",
        ),
        (
            "api/db/migrations/0003_fifo.sql",
            0,
            "naming",
            "not a regular file (a FIFO)",
            "move it out of the migrations directory",
        ),
        (
            "api/db/migrations/0004_hard.sql",
            0,
            "naming",
            "has 2 hard links: a migration file has no other name, through which it could be changed from "
            "outside the directory",
            "replace it with a copy of its own (copy it to a new name, then rename that over it)",
        ),
        (
            "api/db/migrations/0005_big.sql",
            0,
            "naming",
            "is 264 bytes, more than a migration file may hold (200 bytes)",
            "split the schema into smaller files",
        ),
    ]


def test_a_file_of_exactly_the_size_bound_is_read(make_project, monkeypatch):
    content = compliant(FIRST)
    monkeypatch.setattr(migrations, "MAX_FILE_BYTES", len(content.encode()))
    assert [m.name for m in verdict.load(make_project({FIRST: content}))] == [FIRST]


def test_every_entry_that_cannot_be_looked_at_or_read_is_named(make_project, monkeypatch):
    names = {FIRST: compliant(FIRST)} | {f"000{n}_x.sql": compliant(f"000{n}_x.sql") for n in (2, 3, 4, 5)}
    project = make_project(names)
    real_lstat, real_read = migrations._Directory.lstat, migrations._Directory.read

    def lstat(self, name):
        if name in ("0002_x.sql", "0003_x.sql"):
            raise PermissionError(13, "Permission denied")
        return real_lstat(self, name)

    def read(self, name, seen):
        return (
            "cannot be read: Input/output error"
            if name in ("0004_x.sql", "0005_x.sql")
            else real_read(self, name, seen)
        )

    monkeypatch.setattr(migrations._Directory, "lstat", lstat)
    monkeypatch.setattr(migrations._Directory, "read", read)
    assert [(f, line, rule, what, fix) for f, line, rule, what, fix in described(project)] == [
        (f"api/db/migrations/000{n}_x.sql", 0, "naming", what, UNREADABLE)
        for n, what in (
            (2, "cannot be read: Permission denied"),
            (3, "cannot be read: Permission denied"),
            (4, "cannot be read: Input/output error"),
            (5, "cannot be read: Input/output error"),
        )
    ]


def test_an_unlistable_directory_names_its_next_step(make_project, monkeypatch):
    def refuse(path):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(migrations, "_Directory", refuse)
    assert described(project_with(make_project)) == [
        ("api/db/migrations", 0, "naming", "cannot be read: Permission denied", UNREADABLE)
    ]


@POSIX
def test_a_link_swapped_in_names_the_reason_only(make_project, monkeypatch, secret_file):
    project = project_with(make_project, **{"0002_x.sql": compliant("0002_x.sql")})
    real = migrations._Directory.read

    def swap_then_read(self, name, seen):
        if name == "0002_x.sql":
            path = project / "api/db/migrations" / name
            path.unlink()
            path.symlink_to(secret_file)
        return real(self, name, seen)

    monkeypatch.setattr(migrations._Directory, "read", swap_then_read)
    assert described(project) == [
        (
            "api/db/migrations/0002_x.sql",
            0,
            "naming",
            "cannot be read: Too many levels of symbolic links",
            UNREADABLE,
        )
    ]


@pytest.mark.posix_only("directory descriptors (os.open of a directory, dir_fd) are POSIX's")
def test_the_directory_is_read_through_its_descriptor(make_project):
    """Once open, a directory swapped under its name is not the one read: names, lstat and open
    all go through the descriptor."""
    project = project_with(make_project)
    directory = project / "api/db/migrations"
    original = (directory / FIRST).read_bytes()
    with migrations._Directory(directory) as folder:
        assert isinstance(folder.fd, int)
        directory.rename(project / "api/db/moved")
        directory.mkdir()
        (directory / FIRST).write_text("planted\n", encoding="utf-8", newline="\n")
        (directory / "0009_planted.sql").write_text("planted\n", encoding="utf-8", newline="\n")
        assert folder.names() == [FIRST]
        seen = folder.lstat(FIRST)
        assert seen.st_ino == os.stat(project / "api/db/moved" / FIRST).st_ino
        assert folder.read(FIRST, seen) == original
        descriptor = folder.fd
    with pytest.raises(OSError):  # closed with the scan
        os.fstat(descriptor)


def test_without_descriptors_the_directory_is_read_by_path(make_project, monkeypatch):
    monkeypatch.setattr(platforms, "DIRECTORY_READ", None)
    project = project_with(make_project)
    directory = project / "api/db/migrations"
    with migrations._Directory(directory) as folder:
        assert folder.fd is None
        (directory / "0002_x.sql").write_text("x\n", encoding="utf-8", newline="\n")
        assert folder.names() == [FIRST, "0002_x.sql"]
        seen = folder.lstat(FIRST)
        assert folder.read(FIRST, seen) == (directory / FIRST).read_bytes()


def test_a_hidden_character_names_its_own_line_after_a_blank_first_line(make_project):
    body = "\n" + compliant(FIRST).replace("BEGIN;", "BEGIN; -- \x07")
    assert described(make_project({FIRST: body}, print_files=False)) == [
        (
            f"api/db/migrations/{FIRST}",
            3,
            "text",
            "a control character (U+0007): not plain text",
            "remove it: a migration is plain text",
        )
    ]


def test_a_long_file_name_is_cut_in_the_description():
    described_ = rules.Violation("f" * 400, 1, rules.TEXT, "x").describe()
    assert described_ == f'{"f" * 298} …: rule "text": x'


def test_the_scan_goes_on_past_an_entry_that_is_not_a_migration_name(make_project):
    """Every entry is judged: one that sorts first and is misnamed hides none after it."""
    files = {"0001-early.sql": "x\n", FIRST: compliant(FIRST), "0003_x.sql": compliant("0003_x.sql")}
    assert refusals(make_project(files)) == [
        'api/db/migrations/0001-early.sql: rule "naming": not a migration file name (expected '
        "NNNN_snake_name.sql, ^[0-9]{4}_[a-z0-9_]+\\.sql$)",
        'api/db/migrations/0003_x.sql: rule "naming": expected number 0002, found 0003',
    ]


@pytest.mark.parametrize(
    ("filename", "shown"),
    [(None, "api/db/migrations"), (FIRST, f"api/db/migrations/{FIRST}")],
    ids=["the directory", "a file in it"],
)
def test_an_os_error_while_the_directory_is_read_is_one_message_naming_the_path_as_shown(
    make_project, monkeypatch, filename, shown
):
    """Beyond what the rules name (a refusal to open or look up): the user's to fix, not a bug."""
    from leaddb.errors import FileError

    project = project_with(make_project)
    named = None if filename is None else str(project / "api/db/migrations" / filename)

    def fail(self):
        raise OSError(5, "Input/output error", named)

    monkeypatch.setattr(migrations._Directory, "names", fail)
    with pytest.raises(FileError) as err:
        verdict.load(project)
    assert (err.value.detail, err.value.hint) == (
        f"cannot read {shown}: Input/output error",
        "check the path, its permissions and the disk",
    )


class _Reading:
    """A migration file opened for reading, as the test wants it read: every read recorded, or
    failing with ``error``."""

    def __init__(self, f, reads: list[int], error: OSError | None):
        self.f, self.reads, self.error = f, reads, error

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def fileno(self):
        return self.f.fileno()

    def read(self, size=-1):
        if self.error:
            raise self.error
        data = self.f.read(size)
        self.reads.append(len(data))
        return data


def read_through(monkeypatch, reads: list[int], error: OSError | None = None, before=None) -> None:
    """Migration files read as :class:`_Reading` reads them (``before(path)`` first, if given);
    nothing else (the spec, the compose file) is read otherwise."""
    real_read, real_fdopen = migrations._Directory.read, os.fdopen

    def read(self, name, seen):
        if before:
            before(self.path / name)
        os.fdopen = lambda fd, *a, **k: _Reading(real_fdopen(fd, *a, **k), reads, error)
        try:
            return real_read(self, name, seen)
        finally:
            os.fdopen = real_fdopen

    monkeypatch.setattr(migrations._Directory, "read", read)


def test_a_file_that_grew_past_the_bound_is_read_one_byte_past_it_and_no_further(make_project, monkeypatch):
    content = compliant(FIRST)
    project = make_project({FIRST: content})
    monkeypatch.setattr(migrations, "MAX_FILE_BYTES", len(content.encode()))

    def grow(path):  # after lstat saw it within the bound
        with open(path, "ab") as f:
            f.write(b"-- more\n" * 100)

    reads: list[int] = []
    read_through(monkeypatch, reads, before=grow)
    assert refusals(project) == [
        f'api/db/migrations/{FIRST}: rule "naming": grew past what a migration file may hold '
        f"({migrations.MAX_FILE_BYTES} bytes) while it was read"
    ]
    assert sum(reads) == migrations.MAX_FILE_BYTES + 1


def test_a_file_whose_read_fails_is_one_violation_naming_the_reason(make_project, monkeypatch):
    project = project_with(make_project)
    read_through(monkeypatch, [], OSError(5, "Input/output error"))
    assert described(project) == [
        (f"api/db/migrations/{FIRST}", 0, "naming", "cannot be read: Input/output error", UNREADABLE)
    ]
