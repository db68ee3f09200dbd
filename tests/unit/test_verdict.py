"""The rules' verdict and the spec's reading, cached by content (``leaddb.verdict``,
``leaddb.spec``, ``leaddb.cache``): a hit pays neither pglast nor markdown-it; any change of
any input is a miss (judged anew: a stale pass would be a file run unjudged); an entry that is
planted, corrupt or half-written is a miss, then rebuilt."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from functools import cached_property
from pathlib import Path

import pytest
from unit_support import compliant

from leaddb import cache, migrations, platforms, spec, statedir, verdict
from leaddb.rules import RulesBroken

FIRST, SECOND = "0001_first.sql", "0002_second.sql"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A cache directory of this test's own."""
    path = tmp_path / "cache"
    monkeypatch.setenv(statedir.CACHE_DIR_ENV, str(path))
    return path


@pytest.fixture
def judged(monkeypatch):
    """How many times the files were judged anew (and the spec parsed anew)."""
    calls = {"rules": 0, "markdown": 0}
    real_judged = verdict.judged
    real_tokens = spec.Spec.__dict__["_tokens"].func

    def judging(*args):
        calls["rules"] += 1
        return real_judged(*args)

    def parsing(self):
        calls["markdown"] += 1
        return real_tokens(self)

    monkeypatch.setattr(verdict, "judged", judging)
    tokens = cached_property(parsing)
    tokens.__set_name__(spec.Spec, "_tokens")
    monkeypatch.setattr(spec.Spec, "_tokens", tokens)
    return calls


def two_files(make_project) -> Path:
    return make_project({FIRST: compliant(FIRST), SECOND: compliant(SECOND)})


def entries(home: Path, prefix: str) -> list[Path]:
    return sorted(home.glob(f"{prefix}-*.json"))


def shape(found) -> list:
    return [(m.name, m.statements, m.single_transaction) for m in found]


def test_a_second_load_of_the_same_files_judges_nothing_and_gives_the_same_statements(
    make_project, home, judged
):
    project = two_files(make_project)
    first = verdict.load(project)
    assert judged == {"rules": 1, "markdown": 1}
    again = verdict.load(project)
    assert judged == {"rules": 1, "markdown": 1}  # both from the cache
    assert shape(again) == shape(first)
    fresh = [migrations.Migration(m.path, m.number, m.text, m.root) for m in first]  # split anew
    assert shape(again) == [(m.name, m.statements, m.single_transaction) for m in fresh]
    assert all(m.single_transaction for m in again)


def test_a_command_on_unchanged_files_loads_neither_parser(make_project, home):
    """In a process of its own, as a task runs it: the modules are not even imported."""
    project = two_files(make_project)
    script = (
        "import sys; from pathlib import Path; from leaddb import verdict; "
        f"found = verdict.load(Path({str(project)!r})); "
        "import json; parsers = ('pglast', 'markdown_it', 'leaddb.rules', 'leaddb.lint'); "
        "print(json.dumps([len(found), sorted(m for m in parsers if m in sys.modules), "
        "[len(m.statements) for m in found]]))"
    )
    env = {**os.environ, statedir.CACHE_DIR_ENV: str(home), "PYTHONPATH": str(ROOT)}
    runs = [
        subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
        for _ in range(2)
    ]
    assert [r.returncode for r in runs] == [0, 0], runs[-1].stderr[-2000:]
    missed, hit = (json.loads(r.stdout) for r in runs)
    assert missed[:2] == [2, ["leaddb.lint", "leaddb.rules", "markdown_it", "pglast"]]
    assert hit[:2] == [2, []]  # nothing of either parser, nor the rules
    assert hit[2] == missed[2] == [3, 3]  # the same statements


def _flip_byte(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] = ord("x") if data[at] != ord("x") else ord("y")
    path.write_bytes(bytes(data))


CHANGES = {
    # a stale hit would pass each of these: they all break a rule
    "a byte of the first file": lambda p, d: _flip_byte(d / FIRST, 30),
    "a byte of the second file": lambda p, d: _flip_byte(d / SECOND, len((d / SECOND).read_bytes()) - 3),
    "a byte of the spec's block": lambda p, d: (p / spec.SPEC_FILENAME).write_text(
        (p / spec.SPEC_FILENAME).read_text(encoding="utf-8").replace("0002_second", "0002_sekond", 2),
        encoding="utf-8",
        newline="\n",
    ),
    "a file added": lambda p, d: (d / "0003_third.sql").write_text(
        compliant("0003_third.sql"), encoding="utf-8", newline="\n"
    ),
    "a file removed": lambda p, d: (d / SECOND).unlink(),
    "a file renamed": lambda p, d: (d / SECOND).rename(d / "0002_other.sql"),
    "the declared directory": lambda p, d: _move_directory(p, d),
}


def _move_directory(project: Path, directory: Path) -> None:
    """The same files, declared (spec and compose mount, which agree) in another directory."""
    shutil.copytree(directory, project / "api/db/other")
    for name in (spec.SPEC_FILENAME, "docker-compose.yml"):
        text = (project / name).read_text(encoding="utf-8")
        text = text.replace(
            "Migrations directory: `api/db/migrations`", "Migrations directory: `api/db/other`"
        )
        (project / name).write_text(
            text.replace("./api/db/migrations:", "./api/db/other:"), encoding="utf-8", newline="\n"
        )


@pytest.mark.parametrize("change", CHANGES)
def test_any_change_of_an_input_is_judged_anew(make_project, home, judged, change):
    project = two_files(make_project)
    verdict.load(project)
    verdict.load(project)
    assert judged["rules"] == 1
    CHANGES[change](project, project / "api/db/migrations")
    with pytest.raises(RulesBroken):
        verdict.load(project)
    assert judged["rules"] == 2


def test_a_change_judged_anew_and_passing_is_cached_under_its_own_key(make_project, home, judged):
    project = two_files(make_project)
    verdict.load(project)
    third = {
        FIRST: compliant(FIRST),
        SECOND: compliant(SECOND),
        "0003_third.sql": compliant("0003_third.sql"),
    }
    make_project(third)  # the file and its block, both
    assert [m.name for m in verdict.load(project)] == [FIRST, SECOND, "0003_third.sql"]
    verdict.load(project)
    assert judged["rules"] == 2
    assert len(entries(home, verdict.CACHE_PREFIX)) == 2


def test_another_version_of_the_code_is_judged_anew(make_project, home, judged, monkeypatch):
    project = two_files(make_project)
    verdict.load(project)
    monkeypatch.setattr(cache, "code_version", lambda: "another version")
    verdict.load(project)
    assert judged == {"rules": 2, "markdown": 2}


def test_the_code_version_covers_every_module_and_the_parsers(monkeypatch):
    version = cache.code_version.__wrapped__
    before = version()
    real = Path.read_bytes
    monkeypatch.setattr(
        Path, "read_bytes", lambda self: real(self) + b" " if self.name == "rules.py" else real(self)
    )
    assert version() != before
    monkeypatch.undo()
    monkeypatch.setattr(cache, "PARSERS", ("pglast",))
    assert version() != before


def test_a_hidden_entry_of_the_directory_is_part_of_the_key(make_project, home, judged):
    """A hidden file is not a migration, but a block may name it: its presence is an input."""
    project = two_files(make_project)
    verdict.load(project)
    (project / "api/db/migrations/.keep").write_text("", encoding="utf-8", newline="\n")
    verdict.load(project)
    assert judged["rules"] == 2


def test_a_failing_verdict_is_never_cached(make_project, home, judged):
    project = make_project({FIRST: compliant(FIRST).replace("COMMIT;", "")}, print_files=True)
    for _ in range(2):
        with pytest.raises(RulesBroken):
            verdict.load(project)
    assert judged["rules"] == 2
    assert entries(home, verdict.CACHE_PREFIX) == []


# -- planted, corrupt, racing ---------------------------------------------------------------------


def _cached(make_project, home) -> tuple[Path, Path]:
    project = two_files(make_project)
    verdict.load(project)
    (entry,) = entries(home, verdict.CACHE_PREFIX)
    return project, entry


def _plant_link(entry: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_bytes(entry.read_bytes())
    entry.unlink()
    entry.symlink_to(elsewhere)


def _plant_loose_mode(entry: Path, tmp_path: Path) -> None:
    entry.chmod(0o666)


def _plant_hard_link(entry: Path, tmp_path: Path) -> None:
    os.link(entry, tmp_path / "other-name.json")


@pytest.mark.posix_only("files have owners stat shows")
def _plant_other_owner(entry: Path, tmp_path: Path) -> None:
    if not platforms.running_as_root():  # pragma: no cover - CI runs as root
        pytest.skip("only root can give a file to another user")
    platforms.chown(entry, 4242, 4242)


PLANTED = {
    "a symbolic link": _plant_link,
    "a file writable by others": _plant_loose_mode,
    "a file with another name": _plant_hard_link,
    "a file of another user": _plant_other_owner,
}


@pytest.mark.posix_only("modes, owners and links of files as POSIX has them")
@pytest.mark.parametrize("plant", PLANTED)
def test_a_planted_entry_is_a_miss(make_project, home, judged, tmp_path, plant):
    project, entry = _cached(make_project, home)
    PLANTED[plant](entry, tmp_path)
    assert cache.read(entry) is None
    verdict.load(project)
    assert judged["rules"] == 2
    assert not entry.is_symlink() and cache.read(entry) is not None  # replaced by an entry of ours


CORRUPT = {
    "not JSON": lambda data: "{not json",
    "not an object": lambda data: "[]",
    "another key": lambda data: json.dumps({**data, "key": {**data["key"], "files": "0" * 64}}),
    "no value": lambda data: json.dumps({"key": data["key"]}),
    "a file missing": lambda data: json.dumps({**data, "value": data["value"][:1]}),
    "another file's name": lambda data: json.dumps(
        {**data, "value": [["0009_x.sql", *data["value"][0][1:]], data["value"][1]]}
    ),
    "a statement beyond the text": lambda data: json.dumps(
        {**data, "value": [[FIRST, True, [[0, 10**6, 1, 2]]], data["value"][1]]}
    ),
    "a line of text": lambda data: json.dumps(
        {**data, "value": [[FIRST, True, [[0, 1, "1", 2]]], data["value"][1]]}
    ),
    "not a flag": lambda data: json.dumps({**data, "value": [[FIRST, 1, []], data["value"][1]]}),
    "not a list": lambda data: json.dumps({**data, "value": 7}),
    "truncated": lambda data: json.dumps(data)[:-9],
    "not UTF-8": lambda data: "\udcff",
}


@pytest.mark.parametrize("corrupt", CORRUPT)
def test_a_corrupt_entry_is_a_miss_then_rebuilt(make_project, home, judged, corrupt):
    project, entry = _cached(make_project, home)
    good = verdict.load(project)
    text = CORRUPT[corrupt](json.loads(entry.read_text(encoding="utf-8")))
    entry.write_bytes(text.encode("utf-8", "surrogateescape"))
    assert shape(verdict.load(project)) == shape(good)
    assert judged["rules"] == 2
    verdict.load(project)
    assert judged["rules"] == 2  # rebuilt: the next load hits


def test_a_corrupt_spec_entry_is_a_miss_then_rebuilt(make_project, home, judged):
    project = two_files(make_project)
    first = spec.Spec.load(project / spec.SPEC_FILENAME)
    (entry,) = entries(home, spec.CACHE_PREFIX)
    data = json.loads(entry.read_text(encoding="utf-8"))
    value = data["value"]
    beyond = [[*block[:4], len(value["sections"])] for block in value["blocks"]]  # no such section
    for broken in (
        {**data, "value": {**value, "sections": [["x", "1", 1]]}},
        {**data, "value": []},
        {**data, "value": {**value, "blocks": beyond}},
        {**data, "value": {**value, "blocks": [[*b[:4], -2] for b in value["blocks"]]}},
        {**data, "value": {**value, "targets": {"p50": "3"}}},
        {**data, "value": {**value, "declarations": [[1, 1, -1]]}},
        {**data, "value": {**value, "extra": 1}},
    ):
        entry.write_text(json.dumps(broken), encoding="utf-8", newline="\n")
        again = spec.Spec.load(project / spec.SPEC_FILENAME)
        assert (again.blocks, again.declarations, again.sections) == (
            first.blocks,
            first.declarations,
            first.sections,
        )
    assert judged["markdown"] == 8
    assert spec.Spec.load(project / spec.SPEC_FILENAME).targets == first.targets
    assert judged["markdown"] == 8


# a block and a declaration before any heading, others in the first section, a block without a marker
EDGES = """```sql
-- migration: api/db/migrations/0001_first.sql
SELECT 1;
```
- Migrations directory: `api/db/migrations`

# First

```sql
SELECT 2;
```
- Migrations directory: `api/db/other`

## Targets

| percentile | target (seconds) |
|---|---|
| p50 | 3 |
"""


@pytest.mark.parametrize("source", ["the project's spec", "edges"])
def test_a_spec_read_from_the_cache_reads_as_the_spec_parsed(home, judged, tmp_path, source):
    path = ROOT / spec.SPEC_FILENAME
    if source == "edges":
        path = tmp_path / spec.SPEC_FILENAME
        path.write_text(EDGES, encoding="utf-8", newline="\n")
    parsed = spec.Spec.load(path)
    cached = spec.Spec.load(path)
    facts = ("sections", "blocks", "declarations", "targets")
    assert [getattr(cached, f) for f in facts] == [getattr(parsed, f) for f in facts]
    assert judged["markdown"] == 1  # every fact from the cache: none parsed again
    assert (cached.path, cached.text) == (path, parsed.text)
    assert cached.section_at(parsed.blocks[-1].line) == parsed.blocks[-1].section
    if source == "edges":
        assert [b.section for b in cached.blocks] == [None, cached.sections[0]]
        assert [(b.kind, b.name) for b in cached.blocks][1] == (None, None)
        assert [d.section for d in cached.declarations] == [None, cached.sections[0]]


def test_a_spec_that_fails_its_check_is_never_cached(tmp_path, home):
    path = tmp_path / spec.SPEC_FILENAME
    path.write_text("# S\n\n```sql\nSELECT 1;\n", encoding="utf-8", newline="\n")  # a fence never closed
    for _ in range(2):
        with pytest.raises(spec.SpecError):
            spec.Spec.load(path)
    assert entries(home, spec.CACHE_PREFIX) == []


def test_writers_and_readers_racing_see_whole_entries_only(make_project, home):
    """Two writers replacing the entry while two readers read it: every read is the whole entry
    or nothing, every load the same files (bounded: a few hundred rounds)."""
    project = two_files(make_project)
    expected = shape(verdict.load(project))
    (entry,) = entries(home, verdict.CACHE_PREFIX)
    key, value = (
        json.loads(entry.read_text(encoding="utf-8"))["key"],
        json.loads(entry.read_text(encoding="utf-8"))["value"],
    )
    problems, stop = [], threading.Event()

    def write():
        for _ in range(200):
            cache.store(verdict.CACHE_PREFIX, key, value, verdict.CACHE_KEEP)

    def read():
        while not stop.is_set():
            found = cache.lookup(verdict.CACHE_PREFIX, key)
            if found not in (None, value):
                problems.append(found)
            if shape(verdict.load(project)) != expected:
                problems.append("another verdict")

    readers = [threading.Thread(target=read) for _ in range(2)]
    writers = [threading.Thread(target=write) for _ in range(2)]
    for thread in readers + writers:
        thread.start()
    for thread in writers:
        thread.join(timeout=120)
    stop.set()
    for thread in readers:
        thread.join(timeout=120)
    assert problems == []
    assert sorted(p.name for p in home.iterdir()) == sorted(
        p.name for p in entries(home, "*")
    )  # no temporary file left behind


@pytest.mark.posix_only("mode bits mark a planted directory on POSIX; Windows has ACLs instead")
def test_no_cache_directory_judges_every_time(make_project, tmp_path, monkeypatch, judged):
    planted = tmp_path / "planted"
    planted.mkdir(mode=0o777)
    planted.chmod(0o777)  # writable by others: never used
    monkeypatch.setenv(statedir.CACHE_DIR_ENV, str(planted))
    project = two_files(make_project)
    verdict.load(project)
    verdict.load(project)
    assert judged["rules"] == 2
    assert list(planted.iterdir()) == []


# -- what each file does (leaddb.effects: db.status) ----------------------------------------------


def _effects_of(found) -> list:
    return [(f.migration.name, f.effects, f.notes) for f in found]


def test_the_files_effects_from_the_cache_are_what_reading_them_gives(make_project, home, monkeypatch):
    from leaddb import effects, objects

    project = two_files(make_project)
    found = verdict.load(project)
    read = []
    real = objects.read
    monkeypatch.setattr(objects, "read", lambda files: read.append(1) or real(files))
    first, again = effects.of(found), effects.of(found)
    assert read == [1]
    assert _effects_of(again) == _effects_of(first) == _effects_of(real(found))
    assert any(e.action == "create" and e.kind == "table" for f in again for e in f.effects)


@pytest.mark.parametrize(
    "change",
    [
        "a byte of a file",
        "a file renamed",
        "the code version",
        "the entry corrupt",
        "an entry of another shape",
    ],
)
def test_the_files_effects_are_read_anew_when_anything_changed(make_project, home, monkeypatch, change):
    from leaddb import effects, objects

    project = two_files(make_project)
    found = verdict.load(project)
    effects.of(found)
    read = []
    real = objects.read
    monkeypatch.setattr(objects, "read", lambda files: read.append(1) or real(files))
    if change == "a byte of a file":
        found[1] = migrations.Migration(
            found[1].path, 2, found[1].text.replace("id int", "id bigint"), project
        )
    elif change == "a file renamed":
        found[1] = migrations.Migration(found[1].path.with_name("0002_other.sql"), 2, found[1].text, project)
    elif change == "the code version":
        monkeypatch.setattr(cache, "code_version", lambda: "another version")
    else:
        (entry,) = entries(home, effects.CACHE_PREFIX)
        data = json.loads(entry.read_text(encoding="utf-8"))
        bad = {**data, "value": [[FIRST, [["create", "table", "t", "1", None, False]], []], data["value"][1]]}
        entry.write_text(
            "{" if change == "the entry corrupt" else json.dumps(bad), encoding="utf-8", newline="\n"
        )
    assert _effects_of(effects.of(found)) == _effects_of(real(found))
    assert read == [1]


def test_without_a_code_version_no_spec_reading_is_cached_or_taken_from_the_cache(
    home, judged, tmp_path, monkeypatch
):
    """The code cannot be read, so its version is unknown: an entry may hold another code's
    reading, and none is used, not even one an older version filed under no key at all."""
    path = tmp_path / spec.SPEC_FILENAME
    path.write_text(EDGES, encoding="utf-8", newline="\n")
    monkeypatch.setattr(cache, "code_version", lambda: None)
    another = {"sections": [["Another spec", 1, 1]], "blocks": [], "declarations": [], "targets": {}}
    assert cache.store(spec.CACHE_PREFIX, None, another, spec.CACHE_KEEP)
    planted = entries(home, spec.CACHE_PREFIX)
    for _ in range(2):
        assert [s.heading for s in spec.Spec.load(path).sections] == ["First", "Targets"]
    assert judged["markdown"] == 2  # parsed each time
    assert entries(home, spec.CACHE_PREFIX) == planted  # and nothing stored
