"""The report parsers against a corpus of samples written in the formats of Postfix, Exim,
Exchange/Outlook, Gmail and Yahoo (bounces), Yahoo, Microsoft JMRP and a generic feedback
loop (ARF complaints), and malformed mail. Samples are stored with LF line ends and read
with CRLF, as SMTP delivers them."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import pytest

from postyard.inbound.addresses import AddressKind, inbound_address
from postyard.inbound.classify import BounceType, SubType, classify
from postyard.inbound.reports import parse_report
from postyard.inbound.types import (
    Action,
    BounceReport,
    ComplaintReport,
    NotAReport,
    RecipientStatus,
    Report,
)

CORPUS = Path(__file__).parent / "corpus"
VERP = "b+aaaaaaaaaaaaaaaaaaaaaaaaaa-bbbbbbbbbbbbbbbb@send.shop.example"


@dataclass(frozen=True)
class Bounce:
    format: str
    action: Action
    status: str
    recipient: str
    sub_type: SubType
    suppress: bool
    message_id: str | None = None
    return_path: str | None = None


@dataclass(frozen=True)
class Complaint:
    feedback_type: str
    rcpt: tuple[str, ...]
    is_complaint: bool
    message_id: str | None = None
    return_path: str | None = None
    feedback_id: str | None = None


@dataclass(frozen=True)
class Nothing:
    reason: str


EXPECTED: dict[str, Bounce | Complaint | Nothing] = {
    "postfix_user_unknown": Bounce(
        "rfc3464", Action.FAILED, "5.1.1", "nobody@example.net", SubType.NO_EMAIL, True,
        "<0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b@shop.example>", VERP,
    ),
    "postfix_delayed": Bounce(
        "rfc3464", Action.DELAYED, "4.4.1", "slow@example.org", SubType.GENERAL, False,
        "<0193a1b2-0000-7e5f-8a9b-0c1d2e3f4a5b@shop.example>",
    ),
    "exim_user_unknown": Bounce(
        "exim", Action.FAILED, "5.1.1", "gone@example.com", SubType.NO_EMAIL, True,
        "<exim-original-1@shop.example>", VERP,
    ),
    "exim_delay_warning": Bounce(
        "exim", Action.DELAYED, "4.2.0", "later@example.com", SubType.GENERAL, False
    ),
    "exchange_ndr_dsn": Bounce(
        "rfc3464", Action.FAILED, "5.1.10", "missing@contoso.example", SubType.NO_EMAIL, True,
        "<exchange-original-1@shop.example>", VERP,
    ),
    "exchange_ndr_text": Bounce(
        "exchange", Action.FAILED, "5.1.1", "former.employee@legacy.example",
        SubType.NO_EMAIL, True, "<exchange-legacy-1@shop.example>",
    ),
    "exchange_delayed_text": Bounce(
        "exchange", Action.DELAYED, "4.4.7", "busy@legacy.example", SubType.GENERAL, False
    ),
    "gmail_dsn": Bounce(
        "rfc3464", Action.FAILED, "5.1.1", "no.such.person@gmail.example", SubType.NO_EMAIL,
        True, "<gmail-original-1@shop.example>", VERP,
    ),
    "gmail_text_legacy": Bounce(
        "gmail", Action.FAILED, "5.1.1", "typo@example.org", SubType.NO_EMAIL, True,
        "<gmail-legacy-1@shop.example>",
    ),
    "yahoo_text": Bounce(
        "yahoo", Action.FAILED, "5.0.0", "closed.account@yahoo.example", SubType.NO_EMAIL,
        True, "<yahoo-original-1@shop.example>", VERP,
    ),
    "yahoo_dsn_policy": Bounce(
        "rfc3464", Action.FAILED, "5.7.9", "reader@yahoo.example", SubType.CONTENT_REJECTED,
        False,
    ),
    "arf_yahoo_cfbl": Complaint(
        "abuse", ("annoyed@yahoo.example",), True, "<arf-original-1@shop.example>", VERP,
        "0193a1b2c3d4",
    ),
    "arf_microsoft_jmrp": Complaint(
        "abuse", ("reader@outlook.example",), True, "<jmrp-original-1@shop.example>", VERP
    ),
    "arf_generic": Complaint(
        "fraud", ("user1@isp.example", "user2@isp.example"), True,
        "<generic-original-1@shop.example>",
    ),
    "arf_not_spam": Complaint("not-spam", ("happy@isp.example",), False),
    "malformed_arf_no_type": Nothing("not_a_report"),
    "malformed_report_without_status": Nothing("not_a_report"),
    "malformed_truncated": Nothing("not_a_report"),
    "autoreply": Nothing("not_a_report"),
}  # fmt: skip


def _read(name: str) -> Report:
    return parse_report((CORPUS / f"{name}.eml").read_bytes().replace(b"\n", b"\r\n"))


def test_every_sample_has_an_expectation() -> None:
    assert {p.stem for p in CORPUS.glob("*.eml")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus(name: str) -> None:
    expected, report = EXPECTED[name], _read(name)
    if isinstance(expected, Nothing):
        assert report == NotAReport(expected.reason)
    elif isinstance(expected, Complaint):
        assert isinstance(report, ComplaintReport), report
        assert report.feedback_type == expected.feedback_type
        assert report.original_rcpt_to == expected.rcpt
        assert report.is_complaint is expected.is_complaint
        original = report.original
        assert (original.message_id if original else None) == expected.message_id
        assert (original.return_path if original else None) == expected.return_path
        assert (original.feedback_id if original else None) == expected.feedback_id
    else:
        assert isinstance(report, BounceReport), report
        assert report.format == expected.format
        [recipient] = report.recipients
        assert (recipient.action, recipient.status) == (expected.action, expected.status)
        assert recipient.final_recipient == expected.recipient
        assert recipient.diagnostic
        verdict = classify(recipient)
        assert verdict.sub_type is expected.sub_type
        assert verdict.suppress is expected.suppress
        assert verdict.type is (
            BounceType.PERMANENT if expected.action is Action.FAILED else BounceType.TRANSIENT
        )
        original = report.original
        assert (original.message_id if original else None) == expected.message_id
        assert (original.return_path if original else None) == expected.return_path


def test_diagnostic_keeps_the_remote_reply() -> None:
    report = _read("postfix_user_unknown")
    assert isinstance(report, BounceReport)
    assert report.reporting_mta == "mx1.example.net"
    [recipient] = report.recipients
    assert recipient.remote_mta == "mail.example.net"
    assert recipient.diagnostic is not None
    assert recipient.diagnostic.startswith("550 5.1.1 <nobody@example.net>: Recipient address")


@pytest.mark.parametrize(
    ("status", "diagnostic", "sub_type", "suppress"),
    [
        ("5.1.1", None, SubType.NO_EMAIL, True),
        ("5.2.2", "mailbox full", SubType.MAILBOX_FULL, False),
        ("5.3.4", None, SubType.MESSAGE_TOO_LARGE, False),
        ("5.7.1", "rejected", SubType.CONTENT_REJECTED, False),
        ("5.0.0", "550 blocked by Spamhaus", SubType.CONTENT_REJECTED, False),
        ("5.0.0", "550 no such user here", SubType.NO_EMAIL, True),
        ("5.0.0", None, SubType.GENERAL, True),
        ("4.4.7", "delivery time expired", SubType.EXPIRED, False),
    ],
)
def test_classification(
    status: str, diagnostic: str | None, sub_type: SubType, suppress: bool
) -> None:
    verdict = classify(RecipientStatus(Action.FAILED, status, diagnostic, "a@b.example"))
    assert (verdict.sub_type, verdict.suppress) == (sub_type, suppress)


def test_a_status_inside_an_ip_address_is_not_a_status() -> None:
    raw = (
        b"From: MAILER-DAEMON@x.example\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        b"Content-Type: text/plain\r\n\r\nThis is the mail system at host x.example.\r\n\r\n"
        b"<gone@y.example>: connect to 10.5.1.1[10.5.1.1]: refused\r\n"
    )
    report = parse_report(raw)
    assert isinstance(report, BounceReport)
    assert report.recipients[0].status == "5.0.0"


@pytest.mark.parametrize("seed", range(40))
def test_garbage_never_raises(seed: int) -> None:
    rng = random.Random(seed)
    sample = (CORPUS / sorted(EXPECTED)[seed % len(EXPECTED)]).with_suffix(".eml").read_bytes()
    mutated = bytearray(sample)
    for _ in range(rng.randrange(1, 200)):
        mutated[rng.randrange(len(mutated))] = rng.randrange(256)
    cut = mutated[: rng.randrange(len(mutated) + 1)]
    for data in (bytes(mutated), bytes(cut), rng.randbytes(rng.randrange(4096))):
        report = parse_report(data)
        assert isinstance(report, BounceReport | ComplaintReport | NotAReport)


def test_deeply_nested_multiparts_do_not_crash() -> None:
    depth = 3000
    head = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
        for i in range(depth)
    )
    assert isinstance(parse_report(b"From: x@y.example\r\n" + head), NotAReport)


@pytest.mark.parametrize(
    ("address", "kind", "token"),
    [
        ("b+abc234-xyz@send.shop.example", AddressKind.BOUNCE, "abc234-xyz"),
        ("B+ABC234-XYZ@SEND.shop.example", AddressKind.BOUNCE, "abc234-xyz"),
        ("u+abcdef@send.shop.example", AddressKind.UNSUBSCRIBE, "abcdef"),
        ("FBL@send.shop.example", AddressKind.FEEDBACK, ""),
    ],
)
def test_inbound_addresses(address: str, kind: AddressKind, token: str) -> None:
    found = inbound_address(address)
    assert found is not None
    assert (found.kind, found.token, found.domain) == (kind, token, "send.shop.example")


@pytest.mark.parametrize(
    "address",
    ["postmaster@send.shop.example", "b+@send.shop.example", "b+a.b@x.example", "b+x@", "u+1@x"],
)
def test_other_addresses_are_not_inbound(address: str) -> None:
    assert inbound_address(address) is None
