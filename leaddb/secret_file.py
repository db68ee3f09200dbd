"""The value of a secret file (``POSTGRES_PASSWORD_FILE`` and the other ``*_FILE`` settings),
read as the postgres image reads it, refusing what would silently make another secret.

The image takes ``$(< file)``: the content with every trailing newline (``\\n``) dropped,
nothing else. A file saved with a Windows line ending (PowerShell's ``Set-Content`` without
``-NoNewline``, Notepad) ends in ``\\r\\n``, so the image keeps the ``\\r``: the password
becomes ``secret\\r`` and nobody can type it. A byte-order mark (Windows PowerShell 5.1's
``-Encoding utf8``) would likewise become the first character, and UTF-16 (its ``>``) is not
text the image can use. Each is refused here, with how to write the file.
"""

from __future__ import annotations

from leaddb.errors import BackendError

HOW_TO_WRITE = (
    "write it as UTF-8 without a byte-order mark or a line ending: in PowerShell 7 "
    "`Set-Content -NoNewline -Path <file> -Value '<secret>'`, "
    "in a POSIX shell `printf '%s' '<secret>' > <file>`"
)


def secret_value(raw: bytes, *, source: str) -> str:
    """The secret in ``raw`` (a file's bytes) as the image sees it; ``source`` names the file
    for the message (e.g. ``POSTGRES_PASSWORD_FILE /run/secrets/pg_password``)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BackendError(
            f"{source} is not UTF-8 text (byte {exc.start})",
            hint=HOW_TO_WRITE,
        ) from None
    if text.startswith("\ufeff"):
        raise BackendError(
            f"{source} starts with a byte-order mark: the postgres image would keep it as the first "
            "character of the secret",
            hint=HOW_TO_WRITE,
        )
    value = text.rstrip("\n")
    if value.endswith("\r"):
        raise BackendError(
            f"{source} ends in a carriage return (a CRLF line ending): the postgres image would "
            "keep the \\r as the last character of the secret",
            hint=HOW_TO_WRITE,
        )
    return value
