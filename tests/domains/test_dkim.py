"""DKIM: canonicalisation against RFC 6376's examples, and signatures of many message shapes
checked by an independent verifier (dkimpy, with PyNaCl for Ed25519) for both algorithms.
"""

from __future__ import annotations

import base64
import dataclasses
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from postyard.domains.dkim import (
    DkimKey,
    DkimKeyError,
    DkimSigner,
    DkimSigningError,
    canonicalize_body_relaxed,
    canonicalize_header_relaxed,
    generate_ed25519_key,
    generate_rsa_key,
    public_record,
    select_headers,
    signed_header_names,
    split_message,
)
from postyard.domains.dkim_keys import key_algorithm
from postyard.sending.addresses import Address, parse_address
from postyard.sending.mime import Attachment, MessageSpec, build_message

DOMAIN = "acme.test"
DATE = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
T = 1_772_600_000
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8


@dataclass(frozen=True)
class Keys:
    rsa_pem: bytes
    ed_pem: bytes

    def for_domain(self, domain: str = DOMAIN) -> list[DkimKey]:
        return [
            DkimKey(domain, "rsa1", "rsa-sha256", self.rsa_pem),
            DkimKey(domain, "ed1", "ed25519-sha256", self.ed_pem),
        ]

    def dns(self, domain: str = DOMAIN) -> Callable[..., bytes | None]:
        """dkimpy's DNS hook: the TXT record of ``selector._domainkey.domain.``."""
        pems = {"rsa1": self.rsa_pem, "ed1": self.ed_pem}
        records = {f"{s}._domainkey.{domain}.": public_record(p).encode() for s, p in pems.items()}
        return lambda name, timeout=5: records.get(name.decode("ascii"))


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys(rsa_pem=generate_rsa_key(), ed_pem=generate_ed25519_key())


@pytest.fixture(scope="module")
def signer(keys: Keys) -> DkimSigner:
    return DkimSigner(keys.for_domain())


def verdicts(signed: bytes, keys: Keys, domain: str = DOMAIN) -> list[bool]:
    """dkimpy's verdict on each DKIM-Signature, top first."""
    count = len(re.findall(rb"^DKIM-Signature:", signed, flags=re.MULTILINE | re.IGNORECASE))
    verifier = dkim.DKIM(signed)
    results = []
    for index in range(count):
        try:
            results.append(bool(verifier.verify(idx=index, dnsfunc=keys.dns(domain))))
        except dkim.DKIMException:  # e.g. "body hash mismatch" is raised, not returned
            results.append(False)
    return results


def signature_fields(signed: bytes) -> list[bytes]:
    fields, _ = split_message(signed)
    return [raw for name, raw in fields if name == "dkim-signature"]


def tags(field: bytes) -> dict[str, str]:
    value = field.split(b":", 1)[1].replace(b"\r\n", b"").decode("ascii")
    pairs = (item.split("=", 1) for item in value.split(";") if item.strip())
    return {name.strip(): re.sub(r"\s+", "", content) for name, content in pairs}


def addr(value: str) -> Address:
    return parse_address(value, field="to")


BASE = MessageSpec(
    sender=addr("Acme <hello@acme.test>"),
    to=(addr("Ann <ann@example.com>"),),
    subject="Your receipt",
    text="Thanks for your order.\n",
    message_id="<m1@acme.test>",
    date=DATE,
)


def spec(**changes: Any) -> MessageSpec:
    return dataclasses.replace(BASE, **changes)


HEAD = b"From: Acme <hello@acme.test>\r\nTo: ann@example.com\r\nSubject: Hi\r\n"

MESSAGES: dict[str, bytes] = {
    "plain ascii": build_message(spec()),
    "quoted-printable utf-8": build_message(
        spec(subject="Grüße aus Köln ☕", text="Grüße — ünïcödé\n" * 20, html="<p>Grüße</p>")
    ),
    "multipart with attachments and inline image": build_message(
        spec(
            cc=(addr("cc@example.org"),),
            reply_to=(addr("Support <help@acme.test>"),),
            html='<p>Logo: <img src="cid:logo"></p>',
            text=None,
            headers=(
                ("List-Unsubscribe", "<https://acme.test/u/t0k3n>, <mailto:u@acme.test>"),
                ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
                ("Feedback-ID", "c1:acme:postyard"),
            ),
            attachments=(
                Attachment("logo.png", PNG, content_id="logo"),
                Attachment("report.pdf", b"%PDF-1.7\n" + bytes(range(256)) * 30),
                Attachment("naïve notes.txt", "día\n".encode() * 50),
            ),
        )
    ),
    "long lines and a long subject": build_message(
        spec(subject="word " * 80, text="x" * 3000 + "\n" + "y " * 2000 + "\n")
    ),
    "8bit utf-8 body, SMTPUTF8 header": (
        "From: Jörg <jörg@acme.test>\r\nTo: ann@example.com\r\nSubject: Grüße\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
        "Grüße aus Köln,\r\n  mit   Leerzeichen \t \r\n你好\r\n"
    ).encode(),
    "998-octet body line": HEAD + b"\r\n" + b"z" * 998 + b"\r\n",
    "folded headers": (
        b"From: Acme\r\n <hello@acme.test>\r\n"
        b"To: a@example.com,\r\n\tb@example.com,\r\n    c@example.com\r\n"
        b"Subject: folded \t\r\n   across\r\n\tlines  \r\n"
        b"Date: Wed, 4 Mar 2026 05:06:07 +0000\r\n\r\nbody\r\n"
    ),
    "smtp-style unusual case": (
        b"Received: from client.example ([192.0.2.1]) by mx.acme.test; Wed, 4 Mar 2026\r\n"
        b"fROM:hello@acme.test\r\nTO:  ann@example.com\r\nsUbJeCt:\tMixed   Case\r\n"
        b"mime-VERSION: 1.0\r\nCONTENT-type: text/plain\r\nmessage-id: <x@acme.test>\r\n"
        b"\r\nline with trailing blanks \t \r\n\r\n  indented\ttabs\r\n\r\n\r\n\r\n"
    ),
    "resent and repeated headers": (
        b"Resent-From: desk@acme.test\r\nResent-Date: Thu, 5 Mar 2026 00:00:00 +0000\r\n"
        b"Resent-From: other@acme.test\r\n" + HEAD + b"To: second@example.com\r\n\r\nHi\r\n"
    ),
    "headers only": HEAD,
    "empty body": HEAD + b"\r\n",
    "blank-line body": HEAD + b"\r\n\r\n\r\n",
}


@pytest.mark.parametrize("message", MESSAGES.values(), ids=MESSAGES.keys())
def test_both_signatures_verify(message: bytes, keys: Keys, signer: DkimSigner) -> None:
    signed = signer.sign(message, timestamp=T)
    assert signed.endswith(message)  # nothing in the message is touched
    first, second = signature_fields(signed)
    assert tags(first)["a"] == "ed25519-sha256"
    assert tags(second)["a"] == "rsa-sha256"
    assert verdicts(signed, keys) == [True, True]


def test_signature_field_shape(signer: DkimSigner) -> None:
    message = MESSAGES["multipart with attachments and inline image"]
    signed = signer.sign(message, timestamp=T)
    block = signed[: len(signed) - len(message)]
    assert block.endswith(b"\r\n")
    lines = block[:-2].split(b"\r\n")
    assert b"\n" not in b"".join(lines)
    assert all(len(line) <= 78 for line in lines)
    assert sum(1 for line in lines if not line.startswith((b" ", b"\t"))) == 2
    for field in signature_fields(signed):
        values = tags(field)
        assert set(values) == {"v", "a", "c", "d", "s", "t", "h", "bh", "b"}  # no x=, i=, l=
        assert values["v"] == "1"
        assert values["c"] == "relaxed/relaxed"
        assert values["d"] == DOMAIN
        assert values["t"] == str(T)
        signed_names = values["h"].split(":")
        assert "list-unsubscribe" in signed_names
        assert "list-unsubscribe-post" in signed_names
        assert "feedback-id" in signed_names
        assert {"received", "return-path", "bcc"}.isdisjoint(signed_names)
    assert [tags(f)["s"] for f in signature_fields(signed)] == ["ed1", "rsa1"]


@pytest.mark.parametrize("froms", [1, 2])
def test_from_is_listed_once_more_than_it_occurs(froms: int, signer: DkimSigner) -> None:
    message = b"From: a@acme.test\r\n" * froms + b"To: b@example.com\r\n\r\nx\r\n"
    for field in signature_fields(signer.sign(message, timestamp=T)):
        names = tags(field)["h"].split(":")
        assert names.count("from") == froms + 1
        assert names.count("to") == 2  # present single-use fields are over-signed too


def _replace(old: bytes, new: bytes) -> Callable[[bytes], bytes]:
    def change(signed: bytes) -> bytes:
        assert old in signed
        return signed.replace(old, new, 1)

    return change


def _add_from_at_bottom(signed: bytes) -> bytes:
    head, _, body = signed.partition(b"\r\n\r\n")
    return head + b"\r\nFrom: evil@attacker.example\r\n\r\n" + body


TAMPERING: dict[str, Callable[[bytes], bytes]] = {
    "body": _replace(b"Thanks for your order.", b"Thanks for your ORDER."),
    "body appended": lambda signed: signed + b"P.S. click here\r\n",
    "subject": _replace(b"Subject: Your receipt", b"Subject: Your invoice"),
    "to": _replace(b"To: Ann <ann@example.com>", b"To: Ann <bob@example.com>"),
    "second From on top": lambda signed: b"From: evil@attacker.example\r\n" + signed,
    "second From at the bottom": _add_from_at_bottom,
    "second Subject": lambda signed: b"Subject: Urgent\r\n" + signed,
}


@pytest.mark.parametrize("name", TAMPERING)
def test_tampering_breaks_both_signatures(name: str, keys: Keys, signer: DkimSigner) -> None:
    signed = signer.sign(MESSAGES["plain ascii"], timestamp=T)
    assert verdicts(signed, keys) == [True, True]
    assert verdicts(TAMPERING[name](signed), keys) == [False, False]


def test_fields_the_message_lacks_are_not_locked(keys: Keys, signer: DkimSigner) -> None:
    # Only fields present are over-signed, so a relay may add e.g. a Reply-To (a choice:
    # mailing lists do this, and DMARC looks at From, which is always locked).
    signed = signer.sign(MESSAGES["plain ascii"], timestamp=T)
    assert verdicts(b"Reply-To: x@example.net\r\n" + signed, keys) == [True, True]


def test_internationalised_domain_is_signed_as_a_label(keys: Keys) -> None:
    signer = DkimSigner(keys.for_domain("Bücher.Example"))
    message = b"From: info@xn--bcher-kva.example\r\nTo: ann@example.com\r\n\r\nHallo\r\n"
    signed = signer.sign(message, timestamp=T)
    assert {tags(f)["d"] for f in signature_fields(signed)} == {"xn--bcher-kva.example"}
    assert verdicts(signed, keys, "xn--bcher-kva.example") == [True, True]


def test_signing_is_deterministic_and_stamps_the_time(signer: DkimSigner) -> None:
    message = MESSAGES["plain ascii"]
    assert signer.sign(message, timestamp=T) == signer.sign(message, timestamp=T)
    before = int(time.time())
    stamped = int(tags(signature_fields(signer.sign(message))[0])["t"])
    assert before <= stamped <= int(time.time())


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        (b"To: b@example.com\r\n\r\nno from\r\n", "no From"),
        (HEAD + b"\r\nbare\nLF\r\n", "bare CR or LF"),
        (HEAD + b"\r\nbare\rCR\r\n", "bare CR or LF"),
        (b"From: a@acme.test\nTo: b@example.com\n\nunix\n", "bare CR or LF"),
        (b" continued: x\r\n" + HEAD + b"\r\n", "continuation"),
        (b"From a@acme.test Wed Mar  4 05:06:07 2026\r\n" + HEAD + b"\r\n", "field name"),
        (b"From: a@acme.test", "does not end with CRLF"),
        (b"\r\nbody only\r\n", "no From"),
    ],
)
def test_unsignable_messages(message: bytes, problem: str, signer: DkimSigner) -> None:
    with pytest.raises(DkimSigningError, match=problem):
        signer.sign(message, timestamp=T)


def test_timestamp_must_fit_t_tag(signer: DkimSigner) -> None:
    with pytest.raises(ValueError, match="timestamp"):
        signer.sign(MESSAGES["plain ascii"], timestamp=-1)


def test_rfc6376_section_3_4_5_example() -> None:
    message = b"A: X\r\nB : Y\t\r\n\tZ  \r\n\r\n C \r\nD \t E\r\n\r\n\r\n"
    fields, body = split_message(message)
    assert fields == [("a", b"A: X\r\n"), ("b", b"B : Y\t\r\n\tZ  \r\n")]
    assert [canonicalize_header_relaxed(raw) for _, raw in fields] == [b"a:X\r\n", b"b:Y Z\r\n"]
    assert canonicalize_body_relaxed(body) == b" C\r\nD E\r\n"


@pytest.mark.parametrize(
    ("field", "canonical"),
    [
        (b"SUBJECT: Hello\r\n", b"subject:Hello\r\n"),  # name case
        (b"Subject: Hello   World\t\r\n", b"subject:Hello World\r\n"),  # WSP runs, trailing
        (b"Subject:\t  lead\r\n", b"subject:lead\r\n"),  # WSP after the colon
        (b"Subject \t: x\r\n", b"subject:x\r\n"),  # WSP before the colon
        (b"To: a@x,\r\n\tb@y,\r\n   c@z\r\n", b"to:a@x, b@y, c@z\r\n"),  # unfolding
        (b"Subject: keeps CASE and punctuation!!\r\n", b"subject:keeps CASE and punctuation!!\r\n"),
        (b"X-Empty:\r\n", b"x-empty:\r\n"),
        (b"X-Blank:   \r\n", b"x-blank:\r\n"),
        (b"Subject: a", b"subject:a\r\n"),  # the final CRLF is optional on input
        ("Subject: Grüße  ok\r\n".encode(), "subject:Grüße ok\r\n".encode()),
    ],
)
def test_relaxed_header(field: bytes, canonical: bytes) -> None:
    assert canonicalize_header_relaxed(field) == canonical


@pytest.mark.parametrize(
    ("body", "canonical"),
    [
        (b"", b""),  # empty stays empty in relaxed (section 3.4.4); "simple" would give CRLF
        (b"\r\n", b""),
        (b"\r\n\r\n \t\r\n", b""),  # blank and whitespace-only lines at the end
        (b"abc", b"abc\r\n"),  # a CRLF is added to a non-empty body without one
        (b"abc \t ", b"abc\r\n"),
        (b"abc \t \r\n", b"abc\r\n"),  # trailing WSP
        (b"a  \t b\r\n", b"a b\r\n"),  # WSP runs inside a line
        (b" \t lead\r\n", b" lead\r\n"),  # leading WSP is reduced, not removed
        (b"a\r\n\r\n\r\nb\r\n\r\n", b"a\r\n\r\n\r\nb\r\n"),  # inner empty lines stay
        (b"tab\there\r\n", b"tab here\r\n"),
        ("ünï  cödé \r\n".encode(), "ünï cödé\r\n".encode()),
    ],
)
def test_relaxed_body(body: bytes, canonical: bytes) -> None:
    assert canonicalize_body_relaxed(body) == canonical
    if body.endswith(b"\r\n") or not body:
        # An independent implementation agrees on CRLF-terminated bodies.
        assert dkim.canonicalization.Relaxed.canonicalize_body(body) == canonical


def test_headers_are_selected_bottom_up() -> None:
    message = b"To: 1\r\nX: y\r\nTO:  2\r\nFrom: f\r\n\r\n"
    fields, body = split_message(message)
    assert body == b""
    assert signed_header_names(fields) == ["from", "from", "to", "to", "to"]
    assert select_headers(fields, ["to", "to", "to", "from"]) == b"to:2\r\nto:1\r\nfrom:f\r\n"


def test_public_records(keys: Keys) -> None:
    rsa_record = public_record(keys.rsa_pem)
    assert rsa_record.startswith("v=DKIM1; k=rsa; p=")
    spki = serialization.load_der_public_key(base64.b64decode(rsa_record.split("p=")[1]))
    assert isinstance(spki, rsa.RSAPublicKey)
    assert spki.key_size == 2048
    ed_record = public_record(keys.ed_pem)
    assert ed_record.startswith("v=DKIM1; k=ed25519; p=")
    raw = base64.b64decode(ed_record.split("p=")[1])
    private = serialization.load_pem_private_key(keys.ed_pem, password=None)
    assert isinstance(private, ed25519.Ed25519PrivateKey)
    assert raw == private.public_key().public_bytes_raw()
    assert len(raw) == 32
    assert key_algorithm(keys.rsa_pem) == "rsa-sha256"
    assert key_algorithm(keys.ed_pem) == "ed25519-sha256"
    assert b"BEGIN PRIVATE KEY" in keys.rsa_pem  # PKCS#8


def test_key_repr_hides_the_private_key(keys: Keys) -> None:
    key = keys.for_domain()[0]
    assert "PRIVATE" not in repr(key)
    assert "PRIVATE" not in repr(DkimSigner([key]).signers)


def test_unusable_keys_are_refused(keys: Keys) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    cases = [
        ([DkimKey(DOMAIN, "s", "ed25519-sha256", keys.rsa_pem)], "is rsa-sha256"),
        ([DkimKey(DOMAIN, "s", "rsa-sha256", keys.ed_pem)], "is ed25519-sha256"),
        ([DkimKey(DOMAIN, "s", "rsa-sha256", weak)], "2048"),
        ([DkimKey(DOMAIN, "s", "rsa-sha256", b"not a key")], "PEM"),
        ([DkimKey(DOMAIN, "bad_selector", "rsa-sha256", keys.rsa_pem)], "selector"),
        ([DkimKey(DOMAIN, "s;x=1", "rsa-sha256", keys.rsa_pem)], "selector"),
        ([DkimKey("not a domain", "s", "rsa-sha256", keys.rsa_pem)], "domain"),
        ([DkimKey("a" * 64 + ".test", "s", "rsa-sha256", keys.rsa_pem)], "domain"),
        ([], "at least one key"),
    ]
    for key_list, problem in cases:
        with pytest.raises(DkimKeyError, match=problem):
            DkimSigner(key_list)
    with pytest.raises(DkimKeyError, match="PEM"):
        public_record(b"-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n")


def test_a_signer_reused_across_message_shapes_signs_as_a_new_one(keys: Keys) -> None:
    # The signature fields are built once per h= list and t= length and reused: every
    # combination must give the very bytes a fresh signer gives, and verify.
    reused = DkimSigner(keys.for_domain())
    shapes = [MESSAGES["plain ascii"], MESSAGES["multipart with attachments and inline image"]]
    for timestamp in (T, 7, T + 1, 7):
        for message in [*shapes, shapes[0]]:
            signed = reused.sign(message, timestamp=timestamp)
            assert signed == DkimSigner(keys.for_domain()).sign(message, timestamp=timestamp)
            assert {tags(f)["t"] for f in signature_fields(signed)} == {str(timestamp)}
            assert verdicts(signed, keys) == [True, True]
