"""Signatures checked by two independent verifiers: the Standard Webhooks library (webhook-*
headers) and the Resend SDK (svix-* headers), as users' receivers would check them."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
import resend
import standardwebhooks

from postyard.webhooks.signing import (
    USER_AGENT,
    generate_secret,
    sign,
    signature_header,
    webhook_headers,
)

BODY = json.dumps(
    {"type": "email.delivered", "created_at": "2026-01-01T00:00:00.000Z", "data": {"to": ["é"]}},
    ensure_ascii=False,
).encode()
MSG_ID = "msg_2mZ0p7Yt3wqGxkz1"


def now() -> int:
    return int(time.time())  # the verifiers compare with their own clock (5 minute window)


def verify_standard(secret: str, body: bytes, headers: dict[str, str]) -> object:
    return standardwebhooks.Webhook(secret).verify(body, headers)


def verify_resend(secret: str, body: bytes, headers: dict[str, str]) -> object:
    return resend.Webhooks.verify(
        {
            "payload": body.decode(),
            "headers": {
                "id": headers["svix-id"],
                "timestamp": headers["svix-timestamp"],
                "signature": headers["svix-signature"],
            },
            "webhook_secret": secret,
        }
    )


Verifier = Callable[[str, bytes, dict[str, str]], object]
VERIFIERS: list[Verifier] = [verify_standard, verify_resend]


def test_secrets_are_whsec_and_32_random_bytes() -> None:
    secrets = {generate_secret() for _ in range(50)}
    assert len(secrets) == 50
    for secret in secrets:
        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32


def test_signature_matches_the_reference_implementation() -> None:
    secret, timestamp = generate_secret(), 1_767_225_600
    reference = standardwebhooks.Webhook(secret).sign(
        MSG_ID, datetime.fromtimestamp(timestamp, tz=UTC), BODY.decode()
    )
    assert sign(secret, MSG_ID, timestamp, BODY) == reference
    assert reference.startswith("v1,")


@pytest.mark.parametrize("verify", VERIFIERS)
def test_both_verifiers_accept_our_headers(verify: Verifier) -> None:
    secret = generate_secret()
    headers = webhook_headers([secret], MSG_ID, now(), BODY)
    assert verify(secret, BODY, headers) == json.loads(BODY)


def test_headers_come_in_both_families_with_identical_values() -> None:
    headers = webhook_headers([generate_secret()], MSG_ID, 1_767_225_600, BODY)
    for name in ("id", "timestamp", "signature"):
        assert headers[f"webhook-{name}"] == headers[f"svix-{name}"]
    assert headers["webhook-id"] == MSG_ID
    assert headers["webhook-timestamp"] == "1767225600"
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == USER_AGENT
    assert "Postyard" in USER_AGENT


@pytest.mark.parametrize("verify", VERIFIERS)
def test_during_a_rotation_either_secret_verifies(verify: Verifier) -> None:
    new, old, stranger = generate_secret(), generate_secret(), generate_secret()
    headers = webhook_headers([new, old], MSG_ID, now(), BODY)
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert verify(new, BODY, headers) == json.loads(BODY)
    assert verify(old, BODY, headers) == json.loads(BODY)
    with pytest.raises((standardwebhooks.WebhookVerificationError, ValueError)):
        verify(stranger, BODY, headers)


def tampered(headers: dict[str, str], field: str, value: str) -> dict[str, str]:
    return {**headers, f"webhook-{field}": value, f"svix-{field}": value}


@pytest.mark.parametrize("verify", VERIFIERS)
def test_tampering_fails_verification(verify: Verifier) -> None:
    secret, timestamp = generate_secret(), now()
    headers = webhook_headers([secret], MSG_ID, timestamp, BODY)
    forged_body = BODY.replace(b"delivered", b"bounced")
    attempts = [
        (forged_body, headers),
        (BODY, tampered(headers, "timestamp", str(timestamp - 1))),
        (BODY, tampered(headers, "id", "msg_other")),
    ]
    for body, fields in attempts:
        with pytest.raises((standardwebhooks.WebhookVerificationError, ValueError)):
            verify(secret, body, fields)


def test_malformed_secrets_and_ids_are_refused() -> None:
    for secret in ("", "whsec_", "c2VjcmV0", "whsec_not base64!"):
        with pytest.raises(ValueError, match="secret"):
            sign(secret, MSG_ID, 0, BODY)
    with pytest.raises(ValueError, match="at least one"):
        signature_header([], MSG_ID, 0, BODY)
    with pytest.raises(ValueError, match="line breaks"):
        webhook_headers([generate_secret()], "msg\r\nx-injected: 1", 0, BODY)
