"""The line-ending check every built message passes (SMTP smuggling)."""

from __future__ import annotations

import pytest

from postyard.sending.mime import only_crlf


@pytest.mark.parametrize(
    "raw",
    [b"", b"a\r\nb\r\n", b"\r\n\r\n.\r\n", b"no line end at all"],
)
def test_crlf_only_passes(raw: bytes) -> None:
    assert only_crlf(raw)


@pytest.mark.parametrize(
    "raw",
    [b"a\nb", b"a\rb", b"a\r\r\nb", b"a\r\n\nb", b"\n\r", b"a\r\n.\n", b"x\r"],
)
def test_a_bare_cr_or_lf_anywhere_fails(raw: bytes) -> None:
    assert not only_crlf(raw)
