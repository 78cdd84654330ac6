"""The reply table: enhanced status codes everywhere RFC 2034 asks for them, and aiosmtpd's
own replies mapped to ours."""

from __future__ import annotations

import re
import uuid

import pytest

from postyard.smtp import replies

# RFC 3463: the class of the enhanced code is the class of the basic code.
ENHANCED = re.compile(r"^([245])\d\d \1\.\d{1,3}\.\d{1,3} \S[ -~]*$")
TABLE = {
    name: value
    for name, value in vars(replies).items()
    if name.isupper()
    and not name.startswith("_")
    and isinstance(value, str)
    and name != "GREETING_TEXT"
}


@pytest.mark.parametrize("name", sorted(TABLE))
def test_every_reply_has_an_enhanced_code(name: str) -> None:
    assert ENHANCED.match(TABLE[name]), TABLE[name]


@pytest.mark.parametrize(
    "aiosmtpd_reply",
    [
        "250 OK",
        "221 Bye",
        '500 Error: command "FOO" not recognized',
        "500 Error: bad syntax",
        "500 Command line too long",
        "503 Error: need MAIL command",
        "503 Error: need RCPT command",
        "503 Error: send HELO first",
        "503 Error: nested MAIL command",
        "501 Syntax: MAIL FROM: <address> [SP <mail-parameters>]",
        "501 Syntax: RCPT TO: <address>",
        "552 Error: message size exceeds fixed maximum message size",
        "552 Error: Too much mail data",
        "555 MAIL FROM parameters not recognized or not implemented",
        "220 Ready to start TLS",
        "454 TLS not available",
        "502 EXPN not implemented",
        "250 Supported commands: AUTH DATA",
        "500 Error: (KeyError) 'secret internals'",
    ],
)
def test_aiosmtpd_replies_are_translated(aiosmtpd_reply: str) -> None:
    translated = replies.translate(aiosmtpd_reply)
    assert ENHANCED.match(translated) or translated.startswith("214 2.0.0 "), translated
    assert "secret" not in translated


def test_malformed_address_depends_on_the_command() -> None:
    malformed = "553 5.1.3 Error: malformed address"
    assert replies.translate(malformed, command="MAIL") == replies.BAD_SENDER
    assert replies.translate(malformed, command="RCPT") == replies.BAD_RECIPIENT


def test_our_replies_and_ehlo_lines_pass_unchanged() -> None:
    for reply in [*TABLE.values(), "250-PIPELINING", "250 smtp.example", "354 End data"]:
        assert replies.translate(reply) == reply


def test_built_replies() -> None:
    message_id = uuid.UUID("01900000-0000-7000-8000-000000000001")
    assert replies.queued(message_id) == f"250 2.0.0 Ok: queued as {message_id}"
    refused = replies.message_refused("bad\r\nBcc: x\x00" + "y" * 600)
    assert ENHANCED.match(refused)
    assert len(refused) < 420
