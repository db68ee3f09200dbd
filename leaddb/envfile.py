"""``.env`` as Compose reads it, and the one way the Compose files are read.

python-dotenv parses each line (quotes, ``export``, inline ``# comments`` and escapes, as
Compose documents them); unquoted and double-quoted values are interpolated
(``leaddb/interpolation.py``) over the environment, then earlier lines; single-quoted ones are
literal. ``read_text`` reads ``docker-compose.yml`` and ``.env`` alike: a regular file, UTF-8,
bounded, or one ``ComposeError`` naming it.
"""

from __future__ import annotations

import io
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path

from dotenv.parser import parse_stream

from leaddb import platforms
from leaddb.errors import ComposeError
from leaddb.interpolation import DOTENV_FILENAME, InterpolationError, Made, Variable, expand

# what precedes the value on a binding's line: export, the key, `=`; then the opening quote if any
_BINDING_HEAD = re.compile(
    r"\s*(?:export[^\S\r\n]+)?(?:'[^']+'|[^=#\s]+)[^\S\r\n]*=[^\S\r\n]*(?P<quote>['\"]?)"
)
_NEWLINE = re.compile(r"\r\n|\n|\r")


# the most docker-compose.yml or .env may hold: far beyond any real one (a few KiB), and a bound
# on the work (PyYAML reads about 10,000 values a second on a loaded machine)
MAX_FILE_BYTES = 256 * 1024


def read_text(path: Path, what: str, hint: str) -> str | None:
    """A file's text as UTF-8; None when it does not exist; ComposeError when it cannot be read,
    is not a regular file (a FIFO would block the read forever, a device never end it) or holds
    more than ``MAX_FILE_BYTES``. A link is followed, as Compose follows it."""
    try:
        fd = os.open(path, platforms.NOFOLLOW_READ & ~getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        if path.is_dir():  # Windows opens no directory (EACCES)
            raise ComposeError(f"{what} is a directory, not a file", hint=hint) from None
        raise ComposeError(f"{what} cannot be read: {exc.strerror or exc}", hint=hint) from None
    kind = os.fstat(fd).st_mode
    if not stat.S_ISREG(kind):
        os.close(fd)
        if stat.S_ISDIR(kind):
            raise ComposeError(f"{what} is a directory, not a file", hint=hint)
        raise ComposeError(f"{what} is not a regular file (a FIFO, socket or device)", hint=hint)
    with os.fdopen(fd, "rb") as f:
        try:
            data = f.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise ComposeError(f"{what} cannot be read: {exc.strerror or exc}", hint=hint) from None
    if len(data) > MAX_FILE_BYTES:
        raise ComposeError(
            f"{what} is larger than {MAX_FILE_BYTES // 1024} KiB: not a file of settings", hint=hint
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ComposeError(
            f"{what}:{line}: not valid UTF-8 (byte 0x{data[exc.start]:02x})", hint="save it as UTF-8"
        ) from None


def read_dotenv_bindings(path: Path, environ: Mapping[str, str] | None = None) -> dict[str, Variable]:
    """``.env`` as Compose reads it: python-dotenv parses each line; unquoted and
    double-quoted values are interpolated (the environment, then earlier lines), single-quoted
    ones are literal. A line python-dotenv cannot parse is an error naming its line."""
    environ = os.environ if environ is None else environ
    text = read_text(
        path, DOTENV_FILENAME, hint=f"{DOTENV_FILENAME} holds KEY=VALUE lines (see .env.example)"
    )
    values: dict[str, Variable] = {}
    if text is None:
        return values
    made = Made()

    def lookup(name: str) -> Variable:
        if name in environ:
            return Variable(name, environ[name], "the environment")
        return values.get(name) or Variable(name, None, "")

    for binding in parse_stream(io.StringIO(text)):
        raw = binding.original.string
        leading = raw[: len(raw) - len(raw.lstrip())]
        line = binding.original.line + len(_NEWLINE.findall(leading))
        where = f"{DOTENV_FILENAME}:{line}"
        if binding.error:
            raise ComposeError(
                f"{where}: not a KEY=VALUE line (an unclosed quote, a space in the name, …)",
                hint='write KEY=VALUE; quote a value with spaces or a `#` in it: KEY="a # b"',
            )
        if binding.key is None or binding.value is None:  # a comment, or a bare KEY: nothing to set
            continue
        head = _BINDING_HEAD.match(raw)
        value = binding.value
        if not (head and head.group("quote") == "'"):
            try:
                value = expand(value, lookup, [], made)
            except InterpolationError as exc:
                raise ComposeError(f"{where}: {binding.key}: {exc.problem}", hint=exc.hint) from None
        if "\0" in value:
            raise ComposeError(
                f"{where}: {binding.key}: the value contains a NUL character", hint="remove it"
            )
        values[binding.key] = Variable(binding.key, value, where)
    return values


def read_dotenv(path: Path, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``.env``'s values (see ``read_dotenv_bindings``)."""
    return {k: v.value or "" for k, v in read_dotenv_bindings(path, environ).items()}
