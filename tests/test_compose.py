"""docker-compose.yml and .env read as Compose reads them: python-dotenv for .env, Compose's
documented interpolation, YAML errors with their line and column, and one message naming the
file (never a traceback) for anything the file cannot mean."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from leaddb import compose, interpolation
from leaddb.compose import ComposeError

REPO = Path(__file__).resolve().parent.parent
ORIGINAL = (REPO / "docker-compose.yml").read_text(encoding="utf-8")
PORT = '"127.0.0.1:${POSTGRES_PORT:-5432}:5432"'


def line_of(fragment: str) -> int:
    """The 1-based line of the repository's docker-compose.yml holding ``fragment``."""
    return next(i for i, line in enumerate(ORIGINAL.splitlines(), 1) if fragment in line)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copy(REPO / "docker-compose.yml", tmp_path / "docker-compose.yml")
    return tmp_path


def write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8", newline="\n")


def load(project: Path, environ: dict[str, str] | None = None) -> compose.PostgresService:
    return compose.load_service(project, environ=environ or {})


def failure(project: Path, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ComposeError) as err:
        load(project, environ)
    return str(err.value)


# -- interpolation: every form Compose documents -------------------------------------------

ENV = {"SET": "value", "EMPTY": "", "OTHER": "other"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$SET", "value"),
        ("${SET}", "value"),
        ("pre-${SET}-post", "pre-value-post"),
        ("$SET$OTHER", "valueother"),
        ("${UNSET}", ""),
        ("${UNSET:-d}", "d"),
        ("${EMPTY:-d}", "d"),
        ("${SET:-d}", "value"),
        ("${UNSET-d}", "d"),
        ("${EMPTY-d}", ""),
        ("${SET:+r}", "r"),
        ("${EMPTY:+r}", ""),
        ("${UNSET:+r}", ""),
        ("${EMPTY+r}", "r"),
        ("${UNSET+r}", ""),
        ("${SET:?m}", "value"),
        ("${EMPTY?m}", ""),
        ("${UNSET:-${OTHER}}", "other"),
        ("${UNSET:-${ALSO_UNSET:-deep}}", "deep"),
        ("${UNSET:-$OTHER}", "other"),
        ("${SET:+${OTHER}!}", "other!"),
        ("${SET:-${UNSET:?never evaluated}}", "value"),
        ("$$SET", "$SET"),
        ("$${SET}", "${SET}"),
        ("a $ b", "a $ b"),
        ("$1 and $-", "$1 and $-"),
        ("${UNSET:-a:b}", "a:b"),
    ],
)
def test_interpolation_follows_composes_documented_forms(text, expected):
    assert compose.interpolate(text, ENV) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${UNSET:?set it}", "required variable UNSET is not set: set it"),
        ("${EMPTY:?set it}", "required variable EMPTY is empty: set it"),
        ("${UNSET?}", "required variable UNSET is not set"),
        ("${UNSET?need $OTHER}", "required variable UNSET is not set: need other"),
        ("${SET/x/y}", "invalid interpolation format: `${SET/x/y}`"),
        ("${}", "invalid interpolation format: `${}`"),
        ("${1A}", "invalid interpolation format"),
        ("${SET", "`${` is never closed"),
        ("${UNSET:-${SET}", "`${` is never closed"),
    ],
)
def test_interpolation_errors_name_the_variable_or_the_form(text, message):
    with pytest.raises(ComposeError, match=re.escape(message)):
        compose.interpolate(text, ENV)


def test_a_substituted_value_is_not_interpolated_again(project):
    write(project / ".env", "POSTGRES_DB='${SET}'\n")
    assert load(project, {"SET": "no"}).environment["POSTGRES_DB"] == "${SET}"


def test_required_variable_names_the_variable_the_file_and_the_line(project):
    write(
        project / "docker-compose.yml",
        ORIGINAL.replace("${POSTGRES_PASSWORD:-leadgen-dev-only}", "${POSTGRES_PASSWORD:?set a password}"),
    )
    line = ORIGINAL.splitlines().index("      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:-leadgen-dev-only}") + 1
    message = failure(project)
    assert message.startswith(
        f"docker-compose.yml:{line}: required variable POSTGRES_PASSWORD is not set: set a password"
    )
    assert "set POSTGRES_PASSWORD in the environment or in .env" in message
    assert load(project, {"POSTGRES_PASSWORD": "x"}).environment["POSTGRES_PASSWORD"] == "x"


def test_mapping_keys_are_not_interpolated(project):
    write(project / "docker-compose.yml", ORIGINAL.replace("      POSTGRES_DB:", "      ${KEY}:"))
    assert "${KEY}" in load(project, {"KEY": "X"}).environment


# -- .env through python-dotenv ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "port"),
    [
        ("POSTGRES_PORT=5433 # my override", 5433),  # the line: Compose allows the comment
        ("POSTGRES_PORT=5433", 5433),
        ("export POSTGRES_PORT=5434", 5434),
        ('POSTGRES_PORT="5435" # quoted, then a comment', 5435),
        ("POSTGRES_PORT='5436'", 5436),
        ("  POSTGRES_PORT = 5437  ", 5437),
        ("# POSTGRES_PORT=1", 5432),
        ("BASE=54\nPOSTGRES_PORT=${BASE}38", 5438),
        ('BASE=54\nPOSTGRES_PORT="${BASE}39"', 5439),
        ("POSTGRES_PORT=${NOT_SET:-5440}", 5440),
        ("POSTGRES_PORT", 5432),  # a bare key sets nothing
    ],
)
def test_dotenv_lines_read_as_compose_reads_them(project, line, port):
    write(project / ".env", line + "\n")
    assert load(project).ports[0].host_port == port


def test_dotenv_quotes_escapes_and_literal_single_quotes(project):
    write(
        project / ".env",
        'POSTGRES_USER="a # not a comment"\n'
        "POSTGRES_DB=db#not-a-comment\n"
        "POSTGRES_PASSWORD='$literal ${NOPE:?not evaluated}'\n",
    )
    env = load(project).environment
    assert env["POSTGRES_USER"] == "a # not a comment"
    assert env["POSTGRES_DB"] == "db#not-a-comment"
    assert env["POSTGRES_PASSWORD"] == "$literal ${NOPE:?not evaluated}"


def test_process_environment_wins_over_dotenv(project):
    write(project / ".env", "POSTGRES_PORT=5433\nPOSTGRES_DB=from_dotenv\n")
    service = load(project, {"POSTGRES_PORT": "6000"})
    assert service.ports[0].host_port == 6000
    assert service.environment["POSTGRES_DB"] == "from_dotenv"


ENVIRONMENT_BLOCK = ORIGINAL[ORIGINAL.index("    environment:\n") : ORIGINAL.index("    ports:")]
ENVIRONMENT_FORMS = {
    "mapping": ENVIRONMENT_BLOCK + "      POSTGRES_INITDB_ARGS:\n",
    "list": (
        "    environment:\n"
        "      - POSTGRES_USER=${POSTGRES_USER:-postgres}\n"
        "      - POSTGRES_PASSWORD=${POSTGRES_PASSWORD:-leadgen-dev-only}\n"
        "      - POSTGRES_DB=${POSTGRES_DB:-leadgen}\n"
        "      - POSTGRES_INITDB_ARGS\n"
    ),
}


@pytest.mark.parametrize("form", sorted(ENVIRONMENT_FORMS))
def test_an_environment_key_without_a_value_comes_from_the_environment_or_is_left_out(project, form):
    """Compose's rule for ``- KEY`` and ``KEY:``: the shell's (or .env's) value, else unset."""
    write(project / "docker-compose.yml", ORIGINAL.replace(ENVIRONMENT_BLOCK, ENVIRONMENT_FORMS[form], 1))
    environment = load(project).environment
    assert "POSTGRES_INITDB_ARGS" not in environment and environment["POSTGRES_DB"] == "leadgen"
    assert (
        load(project, {"POSTGRES_INITDB_ARGS": "--locale=C"}).environment["POSTGRES_INITDB_ARGS"]
        == "--locale=C"
    )
    write(project / ".env", "POSTGRES_INITDB_ARGS=--data-checksums\n")
    assert load(project).environment["POSTGRES_INITDB_ARGS"] == "--data-checksums"


def test_composes_own_reset_and_override_tags_are_read(project):
    """``!override`` and ``!reset`` are Compose's merge tags: a single file reads as without them."""
    plain = load(project).environment
    tagged = ORIGINAL.replace("    environment:\n", "    labels: !reset {}\n    environment: !override\n", 1)
    write(project / "docker-compose.yml", tagged)
    assert load(project).environment == plain


@pytest.mark.parametrize("value", ["²", "٥٤٣٢", "５４３２"])
def test_a_port_of_non_ascii_digits_is_one_message(project, value):
    write(project / ".env", f"POSTGRES_PORT={value}\n")
    assert "is not a port number (1-65535)" in failure(project)


def test_dotenv_interpolation_prefers_the_environment_too(project):
    write(project / ".env", "BASE=1\nPOSTGRES_DB=db_${BASE}\n")
    assert load(project, {"BASE": "2"}).environment["POSTGRES_DB"] == "db_2"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("OK=1\nA B=1\n", ".env:2: not a KEY=VALUE line"),
        ('\n\nPOSTGRES_PASSWORD="never closed\n', ".env:3: not a KEY=VALUE line"),
        ("POSTGRES_PORT=${REQUIRED:?needed here}\n", ".env:1: POSTGRES_PORT: required variable REQUIRED"),
        ("POSTGRES_PASSWORD=s3kr1t${XYZ\n", ".env:1: POSTGRES_PASSWORD: invalid interpolation format"),
    ],
)
def test_dotenv_errors_name_the_line_and_never_the_value(project, text, message):
    write(project / ".env", text)
    found = failure(project)
    assert found.startswith(message)
    assert "s3kr1t" not in found  # .env values may be secrets


def test_dotenv_not_utf8_or_a_directory(project):
    (project / ".env").write_bytes(b"POSTGRES_DB=caf\xe9\n")
    assert failure(project).startswith(".env:1: not valid UTF-8")
    (project / ".env").unlink()
    (project / ".env").mkdir()
    assert failure(project).startswith(".env is a directory")


# -- the file itself ------------------------------------------------------------------------------


def test_yaml_error_keeps_line_and_column(project):
    lines = ORIGINAL.splitlines()
    at = lines.index("    ports:")
    lines[at] = "   ports:"
    write(project / "docker-compose.yml", "\n".join(lines) + "\n")
    message = failure(project)
    assert message.startswith(f"docker-compose.yml:{at + 1}:4: not valid YAML: ")
    assert "MIGRATION_PATH_UNSPECIFIED" not in message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "docker-compose.yml is empty"),
        ("# only a comment\n", "docker-compose.yml is empty"),
        ("- postgres\n- other\n", "docker-compose.yml:1: the top level is a list, not a mapping"),
        ("just text\n", "docker-compose.yml:1: the top level is a string"),
        ("42\n", "docker-compose.yml:1: the top level is a single value"),
        ("name: x\n", "docker-compose.yml:1: defines no `services:`"),
        ("services:\n  - postgres\n", "docker-compose.yml:2: `services:` is not a mapping"),
        ("services:\n  other: {}\n", "docker-compose.yml:2: no service named 'postgres'"),
        ("services:\n  postgres: [a]\n", "docker-compose.yml:2: service 'postgres' is not a mapping"),
        (
            "services:\n  postgres:\n    image: a\n\x07\n",
            "docker-compose.yml:4: not valid YAML: character 0x0007",
        ),
        ("a: 1\n---\nb: 2\n", "docker-compose.yml:2:1: not valid YAML"),
        ("!!python/object/apply:os.system [ls]\n", "docker-compose.yml:1:1: not valid YAML"),
        ("services: {postgres: {image: 'Not An Image'}}\n", "docker-compose.yml:1: image 'Not An Image'"),
    ],
)
def test_unusable_file_is_one_message_naming_it(project, text, message):
    write(project / "docker-compose.yml", text)
    assert failure(project).startswith(message)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (PORT, '"127.0.0.1:abc:5432"', "port entry '127.0.0.1:abc:5432': the host port 'abc' is not a port"),
        (PORT, '"127.0.0.1:70000:5432"', "the host port '70000' is not a port number"),
        (PORT, '"1:2:3:4"', "port entry '1:2:3:4' is not [[IP:]HOST_PORT:]CONTAINER_PORT"),
        (PORT, '"999.1.1.1:5432:5432"', "'999.1.1.1' is not an IP address"),
        (PORT, '"127.0.0.1:5432:5432/xyz"', "unknown protocol 'xyz'"),
        (PORT, "{published: 5432}", "a port mapping needs `target:`"),
        (PORT, "[1, 2]", "port entry [1, 2] is neither a string nor a mapping"),
        ("ports:\n      - " + PORT, "ports: 5432", "`ports:` is not a list"),
        (
            "- pgdata:/var/lib/postgresql/data",
            "- pgdata:relative",
            "the container path 'relative' is not absolute",
        ),
        ("- pgdata:/var/lib/postgresql/data", "- /var/lib/postgresql/data", "is an anonymous volume"),
        ("- pgdata:/var/lib/postgresql/data", "- other:/data", "volume 'other' is not declared"),
        ("- pgdata:/var/lib/postgresql/data", "- {type: tmpfs, target: /x}", "only `volume` and `bind`"),
        ("- pgdata:/var/lib/postgresql/data", "- {type: bind, source: ./x}", "needs `source:` and `target:`"),
        ("POSTGRES_DB: ${POSTGRES_DB:-leadgen}", "POSTGRES_DB: [a]", "the environment value of POSTGRES_DB"),
        ("interval: 1s", "interval: soon", "healthcheck interval 'soon' is not a duration"),
        ("retries: 60", "retries: many", "healthcheck retries 'many' is not a whole number"),
        (
            "    healthcheck:",
            '    command: "postgres -c \'unclosed"\n    healthcheck:',
            "No closing quotation",
        ),
        ("    healthcheck:", "    command: {a: 1}\n    healthcheck:", "`command:` is neither"),
        ("    healthcheck:", "    shm_size: lots\n    healthcheck:", "shm_size 'lots' is not a size"),
        ("pgdata:\n", "pgdata: [1]\n", "volume 'pgdata' is not a mapping of options"),
        ("name: leadgen", "name: '!!!'", "the project name '!!!' has no letter or digit"),
    ],
)
def test_unusable_service_settings_are_one_message_with_the_line(project, old, new, message):
    assert old in ORIGINAL
    text = ORIGINAL.replace(old, new, 1)
    write(project / "docker-compose.yml", text)
    found = failure(project)
    assert message in found
    line = int(found.split(":")[1])
    assert 1 <= line <= len(text.splitlines())


def test_an_environment_value_in_a_bad_setting_is_named_with_its_source(project):
    found = failure(project, {"POSTGRES_PORT": "5433 # my override"})
    assert "(after interpolating POSTGRES_PORT='5433 # my override' from the environment)" in found
    write(project / ".env", "\n\nPOSTGRES_IMAGE=Bad:Image!\n")
    assert "POSTGRES_IMAGE='Bad:Image!' from .env:3" in failure(project)


def test_a_nul_character_never_reaches_a_value(project):
    write(project / "docker-compose.yml", ORIGINAL.replace("${POSTGRES_DB:-leadgen}", '"lead\\0gen"'))
    line = line_of("POSTGRES_DB:")
    assert failure(project).startswith(f"docker-compose.yml:{line}: a value contains a NUL character")
    write(project / "docker-compose.yml", ORIGINAL)
    (project / ".env").write_bytes(b"POSTGRES_DB=lead\0gen\n")
    assert failure(project).startswith(".env:1: POSTGRES_DB: the value contains a NUL character")


def test_not_utf8_directory_and_missing(project):
    compose_file = project / "docker-compose.yml"
    compose_file.write_bytes(ORIGINAL.encode().replace(b"leadgen-dev-only", b"caf\xe9"))
    line = line_of("leadgen-dev-only")
    assert failure(project).startswith(f"docker-compose.yml:{line}: not valid UTF-8")
    compose_file.unlink()
    assert "missing" in failure(project)
    compose_file.mkdir()
    assert failure(project).startswith("docker-compose.yml is a directory")


def test_ports_that_publish_no_fixed_tcp_host_port_are_left_out(project):
    entries = '["5432", "127.0.0.1::5432", "127.0.0.1:6000-6001:5432", "127.0.0.1:5433:5432/udp",'
    entries += ' {target: 5432, published: "5434", host_ip: "127.0.0.1"}, "[::1]:5435:5432"]'
    write(project / "docker-compose.yml", ORIGINAL.replace("ports:\n      - " + PORT, "ports: " + entries))
    ports = load(project).ports
    assert [(p.host_ip, p.host_port, p.container_port) for p in ports] == [
        ("127.0.0.1", 5434, 5432),
        ("::1", 5435, 5432),
    ]


def test_the_repositorys_file_reads_as_before(project):
    service = load(project)
    assert service.image == "postgres:15"
    assert service.project_name == "leadgen"
    assert service.environment == {
        "POSTGRES_USER": "postgres",
        "POSTGRES_PASSWORD": "leadgen-dev-only",
        "POSTGRES_DB": "leadgen",
    }
    assert [(p.host_ip, p.host_port, p.container_port) for p in service.ports] == [("127.0.0.1", 5432, 5432)]
    assert service.initdb_mount == compose.Mount("./api/db/migrations", compose.INITDB_DIR, True, False)
    assert service.volume_names == {"pgdata": "leadgen_pgdata"}
    assert service.healthcheck["test"][1].endswith('-U "${POSTGRES_USER}" -d "${POSTGRES_DB}"')
    assert load(project, {"COMPOSE_PROJECT_NAME": "Other.Name"}).project_name == "othername"


# -- bounds: what a hostile file could make the reading do ---------------------------------------


def test_a_value_doubled_over_and_over_in_dotenv_is_one_message_naming_line_and_variable(project):
    """Issue 17: 30 doublings took 4.7 s and 2.1 GB. Now the value stops at what one environment
    variable can hold (Linux's MAX_ARG_STRLEN), at the line that crosses it."""
    lines = ["V0=xx"] + [f"V{i}=${{V{i - 1}}}${{V{i - 1}}}" for i in range(1, 31)]
    write(project / ".env", "\n".join(lines) + "\n")
    message = failure(project)
    crossing = next(i for i in range(31) if 2 ** (i + 1) > compose.MAX_VALUE)  # V<i> is 2^(i+1) long
    assert message.startswith(
        f".env:{crossing + 1}: V{crossing}: substituting V{crossing - 1} makes the value longer than "
        f"{compose.MAX_VALUE} characters\n"
    )
    assert "xxxx" not in message


def test_a_value_of_exactly_the_bound_is_read_and_one_more_is_not(project):
    write(project / ".env", f"A={'a' * (compose.MAX_VALUE - 1)}\nPOSTGRES_DB=${{A}}b\n")
    assert len(load(project).environment["POSTGRES_DB"]) == compose.MAX_VALUE
    write(project / ".env", f"A={'a' * compose.MAX_VALUE}\nPOSTGRES_DB=${{A}}b\n")
    assert failure(project).startswith(".env:2: POSTGRES_DB: the value is longer than")
    write(project / ".env", f"A={'a' * compose.MAX_VALUE}\nPOSTGRES_DB=b${{A}}\n")
    assert failure(project).startswith(".env:2: POSTGRES_DB: substituting A makes the value longer than")


def test_a_compose_value_substituting_a_variable_many_times_is_bounded_too(project):
    write(project / ".env", f"A={'a' * 1000}\n")
    write(project / "docker-compose.yml", ORIGINAL.replace("${POSTGRES_DB:-leadgen}", "$A" * 200, 1))
    message = failure(project)
    assert message.startswith(
        f"docker-compose.yml:{line_of('POSTGRES_DB:')}: substituting A makes the value longer than"
    )
    assert "aaaa" not in message.split(" (after interpolating")[0]


def test_all_values_of_one_file_together_are_bounded(project, monkeypatch):
    monkeypatch.setattr(interpolation, "MAX_TOTAL", 50)
    write(project / ".env", "A=" + "a" * 30 + "\nB=${A}\n")
    assert failure(project).startswith(
        ".env:2: B: all that this file interpolates is longer than 50 characters"
    )


def test_nesting_is_bounded_with_one_message(project):
    deep = "${A:-" * (compose.MAX_NESTING + 1) + "x" + "}" * (compose.MAX_NESTING + 1)
    write(project / ".env", f"POSTGRES_DB={deep}\n")
    assert failure(project).startswith(
        f".env:1: POSTGRES_DB: `${{…}}` nested more than {compose.MAX_NESTING}"
    )
    fine = "${A:-" * compose.MAX_NESTING + "x" + "}" * compose.MAX_NESTING
    write(project / ".env", f"POSTGRES_DB={fine}\n")
    assert load(project).environment["POSTGRES_DB"] == "x"
    thousand = "${A:-" * 1000 + "x" + "}" * 1000  # was a RecursionError: an internal error
    write(project / ".env", f"POSTGRES_DB={thousand}\n")
    assert "nested more than" in failure(project)


LAUGHS = "x-a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"x-{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi", strict=True)
)


def test_yaml_aliases_that_expand_to_billions_are_refused(project):
    """PyYAML shares an aliased value; whatever walks the service (its labels as JSON, a message)
    would expand it: 9^9 values."""
    write(
        project / "docker-compose.yml",
        LAUGHS + ORIGINAL.replace("    image:", "    labels: *i\n    image:", 1),
    )
    message = failure(project)
    assert message.startswith("docker-compose.yml:")
    assert f"holds more than {compose.MAX_EXPANDED_VALUES} values, its aliases expanded" in message


def test_a_few_aliases_are_fine_and_a_value_containing_itself_is_not(project):
    shared = "x-env: &env\n  POSTGRES_DB: aliased\n" + ORIGINAL.replace(
        ENVIRONMENT_BLOCK, "    environment: *env\n", 1
    )
    write(project / "docker-compose.yml", shared)
    assert load(project).environment == {"POSTGRES_DB": "aliased"}
    write(project / "docker-compose.yml", "x-r: &r [1, *r]\n" + ORIGINAL)
    assert failure(project).startswith("docker-compose.yml:1: an alias refers to a value that contains it")


def test_deeply_nested_flow_collections_are_one_message(project):
    deep = "[" * (compose.MAX_FLOW_NESTING + 1) + "]" * (compose.MAX_FLOW_NESTING + 1)
    write(project / "docker-compose.yml", f"x-d: {deep}\n" + ORIGINAL)
    assert failure(project).startswith(
        f"docker-compose.yml:1:{5 + compose.MAX_FLOW_NESTING + 1}: not valid YAML: "
        "`[` and `{` nested more than"
    )
    block = "x-d:\n  " + "- " * 2000 + "x\n" + ORIGINAL
    write(project / "docker-compose.yml", block)  # block nesting: Python's recursion limit, one message
    assert "nested too deeply to read" in failure(project)


@pytest.mark.parametrize("name", ["docker-compose.yml", ".env"])
def test_a_file_beyond_the_size_bound_is_not_read(project, name):
    path = project / name
    keep = ORIGINAL if name == "docker-compose.yml" else ""
    write(path, keep + "# " + "x" * compose.MAX_FILE_BYTES + "\n")
    assert failure(project).startswith(f"{name} is larger than {compose.MAX_FILE_BYTES // 1024} KiB")


@pytest.mark.posix_only("FIFOs and device nodes are POSIX's (os.mkfifo, os.mknod)")
def test_a_fifo_or_a_device_is_refused_rather_than_read_forever(project):
    os.mkfifo(project / ".env")  # opening it for reading would wait for a writer
    assert failure(project).startswith(".env is not a regular file")
    (project / ".env").unlink()
    (project / ".env").symlink_to("/dev/zero")  # a link is followed, as Compose follows it
    assert failure(project).startswith(".env is not a regular file")
    (project / ".env").unlink()
    (project / "real.env").write_text("POSTGRES_DB=linked\n", encoding="utf-8", newline="\n")
    (project / ".env").symlink_to(project / "real.env")
    assert load(project).environment["POSTGRES_DB"] == "linked"


def test_messages_quote_a_short_excerpt_of_a_long_value(project):
    write(project / ".env", f"POSTGRES_IMAGE=secret{'x' * 5000}!\n")
    message = failure(project)
    assert message.startswith(f"docker-compose.yml:{line_of('image:')}: image 'secretxx")
    assert len(message.splitlines()[0]) < 400
