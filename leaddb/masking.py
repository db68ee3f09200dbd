"""Secrets out of every message that came near a connection string.

A DSN may carry secrets: ``password=…`` (and ``sslpassword``, ``oauth_client_secret``, the
``scram_*_key``s) in the key=value form, the ``user:secret@`` of a URI and its ``?password=…``.
libpq's own messages quote the parts of a DSN it cannot read (``missing "=" after "horse" in
connection info string``: a word of the password ``correct horse``), and a DSN it cannot read
has no password anyone can point at. So there is one rule, :func:`scrub`, for any message and
the raw DSN it came near:

- every secret value, as libpq read it and as it was written (quoted, escaped, percent-encoded,
  as ``repr`` shows it), and every piece of it of at least ``MIN_PIECE`` characters (split at
  white space and at the characters that end a value in either form), becomes ``***``, wherever
  it appears; so does a "port" that is not a number (a password whose ``@`` went missing);
- where the DSN names a secret but cannot be parsed, what follows the key runs to the end of
  the DSN, every piece of the DSN but libpq's keywords counts as secret, and libpq's quotes of
  it are not echoed at all (``"…"`` stands for each);
- a message that would still hold a secret after that is withheld whole.

:func:`masked` shows a DSN itself, its secrets as ``***`` (one that cannot be parsed as
``<unparsable DSN>``), and so is a readable DSN that a message quotes whole. Secrets shorter than
``MIN_PIECE`` characters are masked there, but not hunted for in the rest of a message (every "a"
would go). libpq's keywords (``host``,
``user``, …) are never taken for parts of a password, so that messages can still name them; and
a password typed where another field belongs cannot be told from it (``postgresql://app:000``
is the host ``app`` on port 000).

psycopg is imported when a DSN is first looked at, not with this module.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

SECRET_KEYS = ("password", "sslpassword", "oauth_client_secret", "scram_client_key", "scram_server_key")
MASK = "***"
UNPARSABLE = "<unparsable DSN>"
WITHHELD = "(message withheld: it contained part of the password in the connection string)"
MIN_PIECE = 3

# the characters that end or delimit a value in a URI or a key=value string
_DELIMITERS = re.compile(r"[\s@/:?&=#,;'\"\\]+")
# any of SECRET_KEYS, anywhere (a lost "?" or space glues it to what comes before)
_KEY = re.compile(r"(?i)(?:password|secret|scram_(?:client|server)_key)\s*=\s*")
# what a DSN that cannot be parsed may show of itself: libpq's keywords and the URI schemes
_KEYWORDS_IF_NO_LIBPQ = frozenset({"host", "hostaddr", "port", "dbname", "user", "options", "sslmode"})
_SCHEMES = frozenset({"postgresql", "postgres"})
_URI = re.compile(r"(?i)^\s*postgres(?:ql)?://")


def _parsed(dsn: str) -> dict | None:
    from psycopg import Error
    from psycopg.conninfo import conninfo_to_dict

    try:
        return conninfo_to_dict(dsn)
    except (Error, ValueError, TypeError):
        return None


def _quoted_value(text: str, start: int, *, readable: bool) -> str:
    """The value a key=value string holds from ``start``: quoted ('…', escapes included) up to
    its closing quote, else up to white space; to the end where the DSN cannot be parsed."""
    if not readable:
        return text[start:]
    if text[start : start + 1] == "'":
        end = start + 1
        while end < len(text) and text[end] != "'":
            end += 2 if text[end] == "\\" else 1
        return text[start : end + 1]
    found = re.compile(r"\s").search(text, start)
    return text[start : found.start() if found else len(text)]


def _written(dsn: str, *, readable: bool) -> set[str]:
    """Every stretch of the DSN as written that is, or may be, a secret."""
    found = set()
    for key in _KEY.finditer(dsn):
        value = _quoted_value(dsn, key.end(), readable=readable)
        if _URI.match(dsn) and readable:  # a query parameter: up to the next one
            value = re.split(r"[&#]", value, maxsplit=1)[0]
        found.add(value)
    scheme = _URI.match(dsn)
    if scheme:
        rest = dsn[scheme.end() :]
        colon, at = rest.find(":"), rest.rfind("@")
        if 0 <= colon < at:  # user:secret@ (conservatively up to the last @: a secret may hold one)
            found.add(rest[colon + 1 : at])
        elif colon >= 0 and at < 0:  # host:port, or user:secret whose "@" went missing
            port = re.split(r"[/?#]", rest[colon + 1 :], maxsplit=1)[0]
            if not re.fullmatch(r"[0-9,\s]*", port):  # not a port: taken for a secret
                found.add(port)
    return found


def _keywords() -> frozenset[str]:
    try:
        from psycopg import pq

        return frozenset(o.keyword.decode() for o in pq.Conninfo.get_defaults()) | _SCHEMES
    except Exception:  # noqa: BLE001 - the few everyone uses, then
        return _KEYWORDS_IF_NO_LIBPQ | _SCHEMES


def secrets_of(dsn: str) -> set[str]:
    """What :func:`scrub` removes for ``dsn``: each secret, its spellings and its pieces; for a
    DSN that names a secret but cannot be parsed, every piece of it but libpq's keywords (which
    part was the secret, nobody can say)."""
    params = _parsed(dsn)
    values = _written(dsn, readable=params is not None)
    if params is None and values:  # it names a secret, but which part it is, nobody can say
        keywords = _keywords()
        values.update(p for p in {*_DELIMITERS.split(dsn), *dsn.split()} if p not in keywords)
    for key in SECRET_KEYS:
        if params and params.get(key):
            values.add(params[key])
    if params and not re.fullmatch(r"[0-9,\s]*", params.get("port") or ""):
        values.add(params["port"])  # not a port: a password whose "@" is missing, read as one
    found = set()
    keywords = _keywords() if params is None else frozenset()
    for value in values:
        # as read, as written, %-encoded, and as repr() shows it in a message (escapes)
        spellings = {value, value.strip("'\""), unquote(value), quote(value, safe=""), repr(value)[1:-1]}
        for spelling in spellings:
            found.add(spelling)
            found.update(_DELIMITERS.split(spelling))
            found.update(spelling.split())
    return {p for p in found if len(p) >= MIN_PIECE and p != MASK and p not in keywords}


def _unquoted(text: str, dsn: str) -> str:
    """``text`` with every double-quoted part of ``dsn`` (two characters or more: ``"="`` says
    nothing) replaced by ``…``: libpq's quotes of a DSN it could not read."""
    spellings = (dsn, unquote(dsn))
    marks = [i for i, c in enumerate(text) if c == '"']
    hidden = [False] * len(text)
    for a, i in enumerate(marks):
        for j in marks[a + 1 :]:
            if j - i > 2 and any(text[i + 1 : j] in spelling for spelling in spellings):
                hidden[i + 1 : j] = [True] * (j - i - 1)
    out, previous = [], False
    for char, hide in zip(text, hidden, strict=True):
        if not hide:
            out.append(char)
        elif not previous:
            out.append("…")
        previous = hide
    return "".join(out)


def scrub(message: str, dsn: str | None) -> str:
    """``message`` without anything that is, or may be, a secret of ``dsn`` (the module's
    docstring says what that is)."""
    if not dsn or not message:
        return message
    text = message
    params = _parsed(dsn)
    if params is None:
        text = _unquoted(text, dsn)
    elif any(params.get(key) for key in SECRET_KEYS):  # the DSN quoted whole: shown masked, even
        shown = _shown(params)  # a secret too short to be hunted for in the rest (``password=00``)
        for spelling in dict.fromkeys((dsn, repr(dsn)[1:-1], dsn.strip())):
            if spelling and spelling != shown:
                text = text.replace(spelling, shown)
    secrets = sorted(secrets_of(dsn), key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, MASK)
    if any(secret in text for secret in secrets):  # the masks joined pieces into one again
        withheld = WITHHELD
        for secret in secrets:  # a secret may be a word of this sentence too
            withheld = withheld.replace(secret, MASK)
        return MASK if any(secret in withheld for secret in secrets) else withheld
    return text


def masked(dsn: str) -> str:
    """The DSN as messages show it: every secret ``***``."""
    params = _parsed(dsn)
    if params is None:
        return UNPARSABLE
    return scrub(_shown(params), dsn)


def _shown(params: dict) -> str:
    """The DSN libpq read as ``params``, its secrets ``***`` (not yet scrubbed of the rest)."""
    from psycopg.conninfo import make_conninfo

    params = {key: MASK if key in SECRET_KEYS and value else value for key, value in params.items()}
    try:
        return make_conninfo(**params)
    except Exception:  # noqa: BLE001 - a value make_conninfo refuses: say so, show nothing
        return UNPARSABLE
