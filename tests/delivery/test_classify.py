"""Bounce classification against a corpus of replies (tests/delivery/data/replies.txt), and
the send-time rules that keep a refusal of our sender from condemning an address."""

from __future__ import annotations

from pathlib import Path

import pytest

from postyard.delivery.classify import (
    BounceCategory,
    BounceType,
    classify,
    classify_outcome,
)
from postyard.delivery.outcome import OutcomeKind, RecipientOutcome, SmtpReply, SmtpStage

CORPUS = Path(__file__).parent / "data" / "replies.txt"


def _corpus() -> list[tuple[str, str, str]]:
    cases = []
    for line in CORPUS.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        category, kind, reply = (part.strip() for part in line.split(" | ", 2))
        cases.append((category, kind, reply))
    return cases


CASES = _corpus()


def test_the_corpus_is_large_and_covers_every_category() -> None:
    assert len(CASES) >= 60
    assert {c for c, _, _ in CASES} == {c.value for c in BounceCategory}
    assert {k for _, k, _ in CASES} == {t.value for t in BounceType}


@pytest.mark.parametrize(("category", "kind", "raw"), CASES, ids=[c[2][:60] for c in CASES])
def test_corpus_reply_is_classified(category: str, kind: str, raw: str) -> None:
    reply = SmtpReply.parse(int(raw[:3]), raw[4:])
    got = classify(reply.text, enhanced=reply.enhanced, code=reply.code)
    assert (got.category.value, got.type.value) == (category, kind), raw


def _outcome(
    raw: str, stage: SmtpStage | None, kind: OutcomeKind = OutcomeKind.BOUNCED
) -> RecipientOutcome:
    reply = SmtpReply.parse(int(raw[:3]), raw[4:])
    return RecipientOutcome("x@example.test", kind, reply, f"refused: {reply}", stage)


def test_an_unknown_user_at_rcpt_is_permanent_and_suppresses() -> None:
    got = classify_outcome(_outcome("550 5.1.1 User unknown", SmtpStage.RCPT))
    assert got is not None
    assert got.type is BounceType.PERMANENT and got.suppresses
    assert (got.resend_type, got.sub_type) == ("Permanent", "NoEmail")


def test_a_block_is_bounced_but_never_suppresses() -> None:
    got = classify_outcome(_outcome("550 5.7.1 Blocked using zen.spamhaus.org", SmtpStage.RCPT))
    assert got is not None
    assert got.type is BounceType.BLOCK and not got.suppresses
    assert got.resend_type == "Transient"


def test_a_refusal_of_our_sender_never_condemns_the_recipient() -> None:
    got = classify_outcome(_outcome("550 5.1.1 Unknown user", SmtpStage.MAIL))
    assert got is not None
    assert got.category is BounceCategory.POLICY and not got.suppresses


def test_a_data_refusal_condemns_an_address_only_when_it_was_alone() -> None:
    alone = classify_outcome(_outcome("550 5.1.1 No such user", SmtpStage.DATA))
    shared = classify_outcome(
        _outcome("550 5.1.1 No such user", SmtpStage.DATA), recipients_in_transaction=3
    )
    assert alone is not None and alone.suppresses
    assert shared is not None and shared.type is BounceType.UNDETERMINED


def test_dns_verdicts_without_a_reply_are_classified_from_the_detail() -> None:
    nxdomain = RecipientOutcome(
        "x@nowhere.test", OutcomeKind.BOUNCED, None, "domain nowhere.test does not exist"
    )
    null_mx = RecipientOutcome(
        "x@void.test",
        OutcomeKind.BOUNCED,
        None,
        "domain void.test does not accept mail (null MX, RFC 7505)",
    )
    odd = RecipientOutcome(
        "x@a.test", OutcomeKind.BOUNCED, None, "mx.a.test does not support SMTPUTF8"
    )
    assert [classify_outcome(o).category for o in (nxdomain, null_mx, odd)] == [  # type: ignore[union-attr]  # all three are bounces
        BounceCategory.BAD_DOMAIN,
        BounceCategory.BAD_DOMAIN,
        BounceCategory.UNDETERMINED,
    ]


def test_outcomes_that_are_not_bounces_are_not_classified() -> None:
    assert classify_outcome(_outcome("250 2.0.0 OK", SmtpStage.DATA, OutcomeKind.DELIVERED)) is None
    assert (
        classify_outcome(_outcome("451 4.3.0 later", SmtpStage.RCPT, OutcomeKind.DEFERRED)) is None
    )


def test_a_status_code_alone_decides_when_the_text_says_nothing() -> None:
    assert classify("", enhanced="5.1.1", code=550).category is BounceCategory.BAD_MAILBOX
    assert classify("", enhanced="5.7.0", code=550).type is BounceType.BLOCK
    assert classify("whatever", enhanced="4.1.1", code=450).type is BounceType.TRANSIENT
    # A DSN gives a status and a diagnostic but no reply code.
    assert classify("smtp; 550 5.1.1 gone").type is BounceType.PERMANENT
    assert classify("smtp; 452 4.2.2 full").type is BounceType.TRANSIENT
