"""Compose's variable interpolation, as Compose documents it: ``$VAR``, ``${VAR}``,
``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?error}``, ``${VAR?error}``,
``${VAR:+replacement}``, ``${VAR+replacement}``, nested forms and ``$$``; bounded in length and
nesting. A plain engine over a ``Lookup`` (name -> ``Variable``): ``leaddb/compose.py`` hands it
the compose file's values and ``.env``'s with the environment and ``.env`` behind the lookup.
"""

from __future__ import annotations

import re
import reprlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from leaddb.errors import ComposeError, excerpt

DOTENV_FILENAME = ".env"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATORS = (":-", ":?", ":+", "-", "?", "+")


@dataclass(frozen=True)
class Variable:
    """One variable an interpolation read, and where its value came from (for messages)."""

    name: str
    value: str | None
    source: str  # "the environment", ".env:3" or "" when unset

    def describe(self) -> str:
        if self.value is None:
            return f"{self.name} (unset)"
        return f"{self.name}={quoted(self.value)} from {self.source}"


class InterpolationError(ComposeError):
    """A ``${…}`` Compose cannot read, or a required variable without a value."""

    def __init__(
        self, problem: str, *, fragment: str = "", hint: str | None = None, variable: str | None = None
    ) -> None:
        self.problem = problem  # never quotes a value: .env values may be secrets
        self.variable = variable
        super().__init__(f"{problem}: `{fragment}`" if fragment else problem, hint=hint)


Lookup = Callable[[str], Variable]


# Bounds on what interpolation makes (Compose has none; these are far beyond any real file):
# one value at most what Linux lets one environment string hold (MAX_ARG_STRLEN, 128 KiB: a
# longer one could never reach the server's process), nesting at most 32 deep (each level is a
# recursion), and all the values of one file together at most 4 MiB.
MAX_VALUE = 128 * 1024
MAX_NESTING = 32
MAX_TOTAL = 4 * 1024 * 1024


class Made:
    """What one file's interpolation has made so far (characters), against ``MAX_TOTAL``."""

    def __init__(self) -> None:
        self.total = 0


def _closing_brace(text: str, start: int) -> int | None:
    """The index of the ``}`` closing a ``${`` whose body starts at ``start`` (nesting counts)."""
    depth, i = 1, start
    while i < len(text):
        if text.startswith("$$", i):
            i += 2
            continue
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def _too_long(variable: Variable | None, limit: int, what: str) -> InterpolationError:
    grows = f"substituting {variable.name} makes {what}" if variable else f"{what} is"
    return InterpolationError(
        f"{grows} longer than {limit} characters",
        hint=f"no value needs that much: look for a variable that substitutes itself over and over "
        f"(the most one environment variable holds is {MAX_VALUE} characters)",
        variable=variable.name if variable else None,
    )


def expand(text: str, lookup: Lookup, used: list[Variable], made: Made | None = None, depth: int = 0) -> str:
    if depth > MAX_NESTING:
        raise InterpolationError(
            f"`${{…}}` nested more than {MAX_NESTING} levels deep",
            hint="nest defaults a few levels at most, e.g. ${A:-${B:-default}}",
        )
    made = made or Made()
    out: list[str] = []
    size = 0

    def add(piece: str, variable: Variable | None = None) -> None:
        nonlocal size
        size += len(piece)
        if size > MAX_VALUE:
            raise _too_long(variable, MAX_VALUE, "the value")
        out.append(piece)

    i = 0
    while i < len(text):
        dollar = text.find("$", i)
        if dollar < 0:
            add(text[i:])
            break
        if dollar > i:
            add(text[i:dollar])
        i = dollar
        following = text[i + 1 : i + 2]
        if following == "$":
            add("$")
            i += 2
        elif following == "{":
            end = _closing_brace(text, i + 2)
            if end is None:
                raise InterpolationError(
                    "invalid interpolation format: `${` is never closed",
                    hint="close it with `}`, or write `$$` for a literal dollar sign",
                )
            before = len(used)
            value = _braced(text[i + 2 : end], lookup, used, made, depth)
            add(value, used[before] if len(used) > before else None)
            i = end + 1
        else:
            name = _NAME.match(text, i + 1)
            if name:
                variable = lookup(name.group())
                used.append(variable)
                add(variable.value or "", variable)
                i = name.end()
            else:  # Compose keeps a `$` that starts no variable as it is
                add("$")
                i += 1
    if depth == 0:
        made.total += size
        if made.total > MAX_TOTAL:
            raise _too_long(None, MAX_TOTAL, "all that this file interpolates")
    return "".join(out)


def _braced(body: str, lookup: Lookup, used: list[Variable], made: Made, depth: int) -> str:
    name = _NAME.match(body)
    rest = body[name.end() :] if name else body
    operator = next((op for op in _OPERATORS if rest.startswith(op)), None) if rest else ""
    if name is None or operator is None:
        raise InterpolationError(
            "invalid interpolation format",
            fragment="${" + excerpt(body, 60) + "}",
            hint="Compose reads ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}, "
            "${VAR:+replacement} and ${VAR+replacement}; write `$$` for a literal dollar sign",
        )
    variable = lookup(name.group())
    used.append(variable)
    value = variable.value
    argument = rest[len(operator) :]
    if operator == "":
        return value or ""
    missing = not value if operator.startswith(":") else value is None
    kind = operator[-1]
    if kind == "-":
        return expand(argument, lookup, used, made, depth + 1) if missing else value or ""
    if kind == "+":
        return "" if missing else expand(argument, lookup, used, made, depth + 1)
    if missing:  # `?`: required
        reason = excerpt(expand(argument, lookup, used, made, depth + 1), 200)
        state = "is not set" if value is None else "is empty"
        raise InterpolationError(
            f"required variable {variable.name} {state}" + (f": {reason}" if reason else ""),
            hint=f"set {variable.name} in the environment or in {DOTENV_FILENAME} (see .env.example)",
            variable=variable.name,
        )
    return value or ""


# how messages show a value read from the file: short, and never expanded (a YAML alias shared
# a million times is one value here)
_QUOTE = reprlib.Repr()
_QUOTE.maxstring = _QUOTE.maxother = 80
_QUOTE.maxlist = _QUOTE.maxtuple = _QUOTE.maxdict = 4
_QUOTE.maxlevel = 2


def quoted(value) -> str:
    return _QUOTE.repr(value)


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """``value`` with Compose's interpolation applied over ``env``."""

    def lookup(name: str) -> Variable:
        found = env.get(name)
        return Variable(name, found, "the environment" if found is not None else "")

    return expand(value, lookup, [])
