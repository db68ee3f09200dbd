"""A secret file is read as the postgres image reads it, and what a Windows editor or
PowerShell would silently add to the secret is refused with how to write the file."""

from __future__ import annotations

import pytest

from leaddb.errors import BackendError
from leaddb.secret_file import secret_value

SOURCE = "POSTGRES_PASSWORD_FILE /run/secrets/pg_password"


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (b"s3cret", "s3cret"),  # Set-Content -NoNewline, printf '%s'
        (b"s3cret\n", "s3cret"),  # echo, an LF editor: the image drops trailing newlines
        (b"s3cret\n\n", "s3cret"),
        (b"s3 cret\twith spaces \n", "s3 cret\twith spaces "),  # nothing else is stripped
        ("pässwörd\n".encode(), "pässwörd"),
        (b"line\rinside\n", "line\rinside"),  # only a trailing \r changes what was meant
    ],
)
def test_the_value_is_what_the_image_reads(raw, value):
    assert secret_value(raw, source=SOURCE) == value


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"s3cret\r\n", "ends in a carriage return (a CRLF line ending)"),  # Set-Content, Notepad
        (b"s3cret\r\n\r\n", "ends in a carriage return (a CRLF line ending)"),
        (b"s3cret\r", "ends in a carriage return (a CRLF line ending)"),
        (b"\xef\xbb\xbfs3cret", "starts with a byte-order mark"),  # Windows PowerShell 5.1 utf8
        ("s3cret\r\n".encode("utf-16"), "is not UTF-8 text (byte 0)"),  # Windows PowerShell 5.1 `>`
    ],
)
def test_what_windows_adds_is_refused_naming_the_file_and_the_fix(raw, problem):
    with pytest.raises(BackendError) as refused:
        secret_value(raw, source=SOURCE)
    message = str(refused.value)
    assert message.startswith(f"{SOURCE} {problem}")
    assert "next step: write it as UTF-8 without a byte-order mark or a line ending" in message
    assert "Set-Content -NoNewline" in message
    assert "s3cret" not in message  # the secret itself is never shown
