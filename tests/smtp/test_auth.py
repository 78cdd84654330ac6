"""AUTH with API keys: PLAIN and LOGIN, STARTTLS and implicit TLS, refused keys, the
per-address throttle, and no open relay."""

from __future__ import annotations

import asyncio
import base64
import smtplib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio

from postyard.core.db import Database
from postyard.settings import Settings
from postyard.smtp.auth import FailureThrottle
from postyard.smtpd import SmtpRole
from postyard.tenancy import service
from postyard.tenancy.types import OrgStatus, Scope
from tests.conftest import KeyFactory, Tenant
from tests.smtp import (
    GUARD_SECONDS,
    FakeClock,
    RawClient,
    TlsFiles,
    compose,
    connect,
    message_count,
    queued_id,
    running_relay,
    unreachable_database,
)

INVALID = (535, b"5.7.8 Authentication credentials invalid")
SUCCEEDED = (235, b"2.7.0 Authentication successful")
AUTH_REQUIRED = (530, b"5.7.0 Authentication required")
Reply = tuple[int, bytes]


@pytest_asyncio.fixture
async def relay(
    settings: Settings, db: Database, tmp_path: Path, tls: TlsFiles
) -> AsyncIterator[SmtpRole]:
    async with running_relay(settings, db, data_dir=tmp_path, tls=tls, implicit_tls_port=0) as role:
        yield role


def send_one(client: smtplib.SMTP) -> tuple[int, bytes]:
    client.mail("app@example.com")
    client.rcpt("ann@example.org")
    return client.data(compose())


def auth(client: smtplib.SMTP, mechanism: str, token: str, *, initial: bool = True) -> Reply:
    """One AUTH exchange (smtplib's login() would try every mechanism in turn); with
    ``initial`` the first response goes with the command (RFC 4954 section 4)."""
    client.user, client.password = "any-user", token
    method = client.auth_plain if mechanism == "PLAIN" else client.auth_login
    try:
        return client.auth(mechanism, method, initial_response_ok=initial)
    except smtplib.SMTPAuthenticationError as exc:
        error = exc.smtp_error
        return exc.smtp_code, error if isinstance(error, bytes) else error.encode()


@pytest.mark.parametrize("initial", [True, False], ids=["initial-response", "challenge"])
@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_plain_and_login_on_loopback(
    relay: SmtpRole, db: Database, tenant: Tenant, mechanism: str, initial: bool
) -> None:
    def talk() -> tuple[Reply, Reply]:
        with connect(relay.port) as client:
            client.ehlo("client.example")
            assert client.esmtp_features["auth"].split() == ["PLAIN", "LOGIN"]
            authenticated = auth(client, mechanism, tenant.key.token, initial=initial)
            return authenticated, send_one(client)

    authenticated, sent = await asyncio.to_thread(talk)
    assert authenticated == SUCCEEDED
    queued_id(sent)
    assert await message_count(db, tenant.org.id) == 1


async def test_starttls_with_a_trusted_certificate(
    relay: SmtpRole, tls: TlsFiles, tenant: Tenant
) -> None:
    def talk() -> tuple[bool, bool, bool, tuple[int, bytes], tuple[int, bytes]]:
        with connect(relay.port) as client:
            client.ehlo("client.example")
            offered_before = client.has_extn("starttls")
            client.starttls(context=tls.client_context())
            client.ehlo("client.example")
            offered_after = client.has_extn("starttls")
            again = client.docmd("STARTTLS")
            return (
                offered_before,
                offered_after,
                client.has_extn("auth"),
                again,
                auth(client, "PLAIN", tenant.key.token),
            )

    before, after, auth_offered, again, authenticated = await asyncio.to_thread(talk)
    assert (before, after, auth_offered) == (True, False, True)
    assert again == (503, b"5.5.1 TLS already active")
    assert authenticated == SUCCEEDED


async def test_implicit_tls(relay: SmtpRole, tls: TlsFiles, db: Database, tenant: Tenant) -> None:
    assert relay.implicit_tls_port is not None
    port = relay.implicit_tls_port

    def talk() -> tuple[bool, tuple[int, bytes], tuple[int, bytes]]:
        context = tls.client_context()
        with smtplib.SMTP_SSL("127.0.0.1", port, context=context, timeout=GUARD_SECONDS) as c:
            c.ehlo("client.example")
            return c.has_extn("starttls"), auth(c, "LOGIN", tenant.key.token), send_one(c)

    starttls_offered, authenticated, sent = await asyncio.to_thread(talk)
    assert not starttls_offered
    assert authenticated == SUCCEEDED
    queued_id(sent)
    assert await message_count(db, tenant.org.id) == 1


async def test_starttls_forgets_the_plaintext_session(
    relay: SmtpRole, tls: TlsFiles, tenant: Tenant
) -> None:
    def talk() -> tuple[int, bytes]:
        with connect(relay.port) as client:
            client.ehlo("client.example")
            assert auth(client, "PLAIN", tenant.key.token) == SUCCEEDED
            client.starttls(context=tls.client_context())  # RFC 3207 section 4.2
            client.ehlo("client.example")
            return client.mail("app@example.com")

    assert await asyncio.to_thread(talk) == AUTH_REQUIRED


async def test_refused_keys(
    relay: SmtpRole, db: Database, tenant: Tenant, make_key: KeyFactory
) -> None:
    revoked = await make_key(tenant.org.id)
    async with db.tenant_tx(tenant.org.id) as session:
        await service.revoke_api_key(session, tenant.org.id, str(revoked.id))

    def talk(token: str) -> tuple[tuple[int, bytes], tuple[int, bytes]]:
        with connect(relay.port) as client:
            client.ehlo("client.example")
            return auth(client, "PLAIN", token), client.mail("app@example.com")

    for token in ["py_not-a-key", tenant.key.token[:-2] + "xx", revoked.token, ""]:
        assert await asyncio.to_thread(talk, token) == (INVALID, AUTH_REQUIRED)
    assert await message_count(db, tenant.org.id) == 0


async def test_suspended_organization(relay: SmtpRole, db: Database, tenant: Tenant) -> None:
    async with db.system_tx(reason="test") as session:
        await service.set_organization_status(session, tenant.org.slug, OrgStatus.SUSPENDED)

    def talk() -> tuple[int, bytes]:
        with connect(relay.port) as client:
            client.ehlo("client.example")
            return auth(client, "PLAIN", tenant.key.token)

    assert await asyncio.to_thread(talk) == (
        535,
        b"5.7.8 Organization suspended; its API keys are refused",
    )


async def test_sending_scope_key_may_send(
    relay: SmtpRole, db: Database, tenant: Tenant, make_key: KeyFactory
) -> None:
    sending = await make_key(tenant.org.id, Scope.SENDING)

    def talk() -> tuple[int, bytes]:
        with connect(relay.port) as client:
            client.ehlo("client.example")
            assert auth(client, "LOGIN", sending.token) == SUCCEEDED
            return send_one(client)

    queued_id(await asyncio.to_thread(talk))
    assert await message_count(db, tenant.org.id) == 1


async def test_no_open_relay_without_auth(relay: SmtpRole, db: Database, tenant: Tenant) -> None:
    def talk() -> list[tuple[int, bytes]]:
        with connect(relay.port) as client:
            client.ehlo("client.example")
            return [
                client.mail("app@example.com"),
                client.rcpt("someone@example.org"),
                client.docmd("DATA"),
            ]

    assert await asyncio.to_thread(talk) == [AUTH_REQUIRED, AUTH_REQUIRED, AUTH_REQUIRED]
    assert await message_count(db, tenant.org.id) == 0


async def test_auth_needs_tls_when_the_loopback_exemption_is_off(
    settings: Settings, db: Database, tmp_path: Path, tls: TlsFiles, tenant: Tenant
) -> None:
    def talk(port: int) -> list[object]:
        with connect(port) as client:
            client.ehlo("client.example")
            seen: list[object] = [client.has_extn("auth"), client.has_extn("starttls")]
            seen.append(client.docmd("AUTH", "PLAIN " + _plain(tenant.key.token)))
            seen.append(client.rcpt("someone@example.org"))
            client.starttls(context=tls.client_context())
            client.ehlo("client.example")
            seen.append(client.has_extn("auth"))
            seen.append(auth(client, "PLAIN", tenant.key.token))
            seen.append(send_one(client)[0])
            return seen

    async with running_relay(
        settings, db, data_dir=tmp_path, tls=tls, allow_auth_without_tls_on_loopback=False
    ) as role:
        seen = await asyncio.to_thread(talk, role.port)
    assert seen == [
        False,
        True,
        (538, b"5.7.11 Encryption required for requested authentication mechanism"),
        AUTH_REQUIRED,
        True,
        SUCCEEDED,
        250,
    ]


def _plain(token: str) -> str:
    return base64.b64encode(b"\0user\0" + token.encode()).decode()


async def test_failed_auth_locks_the_address_out(
    settings: Settings, db: Database, tmp_path: Path, tls: TlsFiles, tenant: Tenant
) -> None:
    clock = FakeClock()

    def attempt(port: int, token: str) -> tuple[int, bytes]:
        with connect(port) as client:
            client.ehlo("client.example")
            return auth(client, "PLAIN", token)

    async with running_relay(
        settings,
        db,
        data_dir=tmp_path,
        tls=tls,
        clock=clock,
        auth_failures_before_lockout=3,
        auth_lockout_seconds=60,
    ) as role:
        for _ in range(3):
            assert await asyncio.to_thread(attempt, role.port, "py_wrong") == INVALID
        locked = (454, b"4.7.0 Too many failed authentication attempts; try again later")
        assert await asyncio.to_thread(attempt, role.port, tenant.key.token) == locked
        clock.advance(timedelta(seconds=59))
        assert await asyncio.to_thread(attempt, role.port, tenant.key.token) == locked
        clock.advance(timedelta(seconds=2))
        assert await asyncio.to_thread(attempt, role.port, tenant.key.token) == SUCCEEDED


async def test_auth_protocol_errors(relay: SmtpRole, tenant: Tenant) -> None:
    def talk() -> list[tuple[int, bytes]]:
        with connect(relay.port) as client:
            client.ehlo("client.example")
            replies = [
                client.docmd("AUTH"),
                client.docmd("AUTH", "CRAM-MD5"),
                client.docmd("AUTH", "PLAIN not-base64!"),
                client.docmd("AUTH", "PLAIN " + base64.b64encode(b"no-nul").decode()),
                client.docmd("AUTH", "PLAIN"),  # a 334 challenge ...
                client.docmd("*"),  # ... cancelled (RFC 4954 section 4)
                client.docmd("AUTH", "plain " + _plain(tenant.key.token)),
                client.docmd("AUTH", "PLAIN " + _plain(tenant.key.token)),
            ]
            client.mail("app@example.com")
            replies.append(client.docmd("AUTH", "PLAIN " + _plain(tenant.key.token)))
            return replies

    assert await asyncio.to_thread(talk) == [
        (501, b"5.5.4 Syntax: AUTH mechanism [initial-response]"),
        (504, b"5.5.4 Unrecognized authentication type; use PLAIN or LOGIN"),
        (501, b"5.5.2 Cannot decode the authentication response"),
        (501, b"5.5.2 Cannot decode the authentication response"),
        (334, b""),
        (501, b"5.7.0 Auth aborted"),
        SUCCEEDED,
        (503, b"5.5.1 Already authenticated"),
        (503, b"5.5.1 Already authenticated"),
    ]


async def test_auth_with_the_database_down_is_a_temporary_failure(
    settings: Settings, tmp_path: Path, tls: TlsFiles, tenant: Tenant
) -> None:
    def attempt(port: int) -> Reply:
        with connect(port) as client:
            client.ehlo("client.example")
            return auth(client, "PLAIN", tenant.key.token)

    async with (
        unreachable_database() as broken,
        running_relay(settings, broken, data_dir=tmp_path, tls=tls) as role,
    ):
        reply = await asyncio.to_thread(attempt, role.port)
    assert reply == (454, b"4.7.0 Temporary authentication failure")


async def test_an_overlong_auth_line_is_refused(relay: SmtpRole) -> None:
    def talk() -> list[bytes]:
        with RawClient(relay.port) as client:
            client.reply()
            client.send(b"EHLO client.example\r\n")
            client.reply()
            client.send(b"AUTH LOGIN\r\n")
            challenge = client.reply()
            client.send(b"A" * 3000 + b"\r\n")
            refused = client.reply()
            client.send(b"NOOP\r\n")
            while (reply := client.reply()) and not reply.startswith(b"250 "):
                pass  # the rest of the long line, answered as a command
            return [challenge, refused, reply]

    assert await asyncio.to_thread(talk) == [
        b"334 VXNlcm5hbWU6\r\n",
        b"500 5.5.6 Authentication exchange line is too long\r\n",
        b"250 2.0.0 OK\r\n",
    ]


def test_throttle_counts_failures_within_the_window() -> None:
    clock = FakeClock()
    throttle = FailureThrottle(max_failures=2, lockout=timedelta(seconds=10), clock=clock)
    throttle.record_failure("192.0.2.1")
    clock.advance(timedelta(seconds=11))  # the first failure has left the window
    throttle.record_failure("192.0.2.1")
    assert not throttle.is_locked_out("192.0.2.1")
    throttle.record_failure("192.0.2.1")
    assert throttle.is_locked_out("192.0.2.1")
    assert not throttle.is_locked_out("192.0.2.2")
    clock.advance(timedelta(seconds=10))
    assert not throttle.is_locked_out("192.0.2.1")


def test_throttle_memory_is_bounded() -> None:
    clock = FakeClock()
    throttle = FailureThrottle(
        max_failures=1, lockout=timedelta(seconds=10), clock=clock, max_tracked=3
    )
    for i in range(10):
        throttle.record_failure(f"192.0.2.{i}")
    locked = [i for i in range(10) if throttle.is_locked_out(f"192.0.2.{i}")]
    assert locked == [7, 8, 9]  # the newest are kept
