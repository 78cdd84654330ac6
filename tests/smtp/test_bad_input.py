"""Bad input gets the RFC reply with an enhanced status code, the connection stays usable,
and nothing is stored: commands, addresses, and messages with malformed or injected
headers."""

from __future__ import annotations

import asyncio
import re

import pytest

from postyard.core.db import Database
from postyard.smtpd import SmtpRole
from tests.conftest import Tenant
from tests.smtp import (
    compose,
    connect,
    message_count,
    queued_id,
)

# RFC 3463 enhanced code after the basic one (RFC 2034 section 3 exempts 3xx replies).
ENHANCED = re.compile(r"^([245])\d\d \1\.\d{1,3}\.\d{1,3} \S")


def _session(port: int, token: str, commands: list[str]) -> list[str]:
    """Each command's reply as "code text"; then a message must still go through."""
    with connect(port) as client:
        client.command_encoding = "utf-8"  # to send non-ASCII with or without SMTPUTF8
        seen = []
        for command in commands:
            if command == "EHLO":
                client.ehlo("client.example")
                continue
            if command == "AUTH":
                client.login("resend", token)
                continue
            verb, _, arg = command.partition(" ")
            code, text = client.docmd(verb, arg)
            seen.append(f"{code} {text.decode()}")
        client.rset()
        client.mail("app@example.com")
        client.rcpt("ann@example.org")
        queued_id(client.data(compose()))
        return seen


async def test_commands_out_of_place(relay: SmtpRole, db: Database, tenant: Tenant) -> None:
    commands = [
        "MAIL FROM:<app@example.com>",
        "EHLO",
        "FOO bar",
        "VRFY ann@example.org",
        "HELP",
        "AUTH",
        "RCPT TO:<ann@example.org>",
        "DATA",
        "MAIL FROM:<app@example.com>",
        "MAIL FROM:<app@example.com>",
        "DATA extra",
        "EXPN list",
        "RSET now",
        "MAIL TO:<x@example.org>",
    ]
    seen = await asyncio.to_thread(_session, relay.port, tenant.key.token, commands)
    assert seen == [
        "503 5.5.1 Send EHLO first",
        "500 5.5.2 Command not recognized",
        "530 5.7.0 Authentication required",
        "530 5.7.0 Authentication required",
        "503 5.5.1 Send MAIL FROM first",
        "503 5.5.1 Send RCPT TO first",
        "250 2.1.0 Sender OK",
        "503 5.5.1 Sender already given; send RSET to start over",
        "503 5.5.1 Send RCPT TO first",
        "502 5.5.1 Command not implemented",
        "501 5.5.4 Syntax: RSET",
        "501 5.5.4 Syntax: MAIL FROM:<address> [parameters]",
    ]
    assert all(ENHANCED.match(reply) for reply in seen)
    assert await message_count(db, tenant.org.id) == 1


async def test_invalid_addresses(relay: SmtpRole, db: Database, tenant: Tenant) -> None:
    commands = [
        "AUTH",
        "MAIL FROM:<@@>",
        "MAIL FROM:<no-domain@>",
        "MAIL FROM:<app@example.com> BOGUS=1",
        "MAIL FROM:<jörg@example.com>",
        "MAIL FROM:<app@example.com>",
        "RCPT TO:<not an address>",
        "RCPT TO:<someone@localhost>",
        'RCPT TO:<"quoted local"@example.org>',
        "RCPT TO:<ann@example.org> NOTIFY=NEVER",
        "RCPT TO:<jörg@example.org>",
        "RCPT TO:<ann@example.org>",
        "RSET",
        "MAIL FROM:<jörg@example.com> SMTPUTF8",
        "RCPT TO:<zoë@example.org>",
    ]
    seen = await asyncio.to_thread(_session, relay.port, tenant.key.token, commands)
    assert seen == [
        "501 5.1.7 Bad sender address syntax",
        "501 5.1.7 Bad sender address syntax",
        "555 5.5.4 MAIL FROM parameters not recognized or not implemented",
        "553 5.6.7 A non-ASCII address needs the SMTPUTF8 parameter (RFC 6531)",
        "250 2.1.0 Sender OK",
        "501 5.1.3 Bad recipient address syntax",
        "501 5.1.3 Bad recipient address syntax",
        "501 5.1.3 Bad recipient address syntax",
        "555 5.5.4 RCPT TO parameters not recognized or not implemented",
        "553 5.6.7 A non-ASCII address needs the SMTPUTF8 parameter (RFC 6531)",
        "250 2.1.5 Recipient OK",
        "250 2.0.0 OK",
        "250 2.1.0 Sender OK",
        "250 2.1.5 Recipient OK",
    ]
    assert await message_count(db, tenant.org.id) == 1


SENDER_LINE = "From: App <app@example.com>"
BAD_MESSAGES = {
    "not-name-value": (
        [SENDER_LINE, "This line has no colon"],
        "A header line is not `name: value` (RFC 5322 section 2.2).",
    ),
    "space-before-colon": (
        [SENDER_LINE, "Subject : hi"],
        "A header line is not `name: value` (RFC 5322 section 2.2).",
    ),
    "leading-fold": ([" folded", SENDER_LINE], "The message starts with a folded header line."),
    "encoded-crlf": (
        [SENDER_LINE, "Subject: =?utf-8?q?hi=0D=0ABcc:_x@example.org?="],
        "The Subject header contains an encoded control character.",
    ),
    "nul": ([SENDER_LINE, "X-Note: a\x00b"], "The X-Note header contains a control character."),
    "no-from": (["Subject: hi"], "The message has no From header."),
    "two-from": (
        [SENDER_LINE, "From: Other <other@example.com>"],
        "The From header appears more than once.",
    ),
    "two-mailboxes": (
        ["From: a@example.com, b@example.com"],
        "The From header must hold exactly one mailbox.",
    ),
    "bad-to": ([SENDER_LINE, "To: nobody"], "The To header holds an invalid address."),
    "bad-message-id": (
        [SENDER_LINE, "Message-ID: not-an-id"],
        "The Message-ID header is not one <id@domain>.",
    ),
}


@pytest.mark.parametrize("case", BAD_MESSAGES, ids=str)
async def test_malformed_or_injected_headers(
    relay: SmtpRole, db: Database, tenant: Tenant, case: str
) -> None:
    lines, reason = BAD_MESSAGES[case]
    data = ("\r\n".join(lines) + "\r\n\r\nbody\r\n").encode()

    def talk() -> tuple[int, bytes]:
        with connect(relay.port) as client:
            client.login("resend", tenant.key.token)
            client.mail("app@example.com")
            client.rcpt("ann@example.org")
            refused = client.data(data)
            client.mail("app@example.com")  # the connection is kept
            client.rcpt("ann@example.org")
            queued_id(client.data(compose()))
            return refused

    assert await asyncio.to_thread(talk) == (554, f"5.6.0 {reason}".encode())
    assert await message_count(db, tenant.org.id) == 1
