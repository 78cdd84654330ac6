"""DKIM signatures (RFC 6376), RSA-SHA256 and Ed25519-SHA256 (RFC 8463), relaxed/relaxed.

The message is never modified: the DKIM-Signature fields are put in front of the exact
bytes given, which are the bytes that go on the wire, so no folding or re-encoding can
come between what was signed and what a verifier sees (conventions A7.1). Keys are parsed
once per ``DkimSigner``, and so are the folded signature fields of each ``h=`` list (with
the places of ``t=`` and ``bh=`` left open); per message the work is one pass over the body
for ``bh=``, the canonical signed headers (shared by all signatures) and one private-key
operation per key.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from postyard.domains.dkim_keys import (
    Algorithm,
    DkimKey,
    DkimKeyError,
    Signer,
    generate_ed25519_key,
    generate_rsa_key,
    load_signer,
    public_record,
)

__all__ = [
    "SIGNED_HEADERS",
    "Algorithm",
    "DkimKey",
    "DkimKeyError",
    "DkimSigner",
    "DkimSigningError",
    "body_hash",
    "canonicalize_body_relaxed",
    "canonicalize_header_relaxed",
    "generate_ed25519_key",
    "generate_rsa_key",
    "public_record",
    "select_headers",
    "signed_header_names",
    "split_message",
]

# RFC 6376 section 5.4.1's recommended set (From, Reply-To, Subject, Date, To, Cc,
# Resent-*, In-Reply-To, References, List-*), the MIME and identity fields of RFC 4871
# section 5.5 (Sender, Message-ID, MIME-Version, Content-*), List-Unsubscribe-Post (RFC
# 8058 section 4 wants it covered), Feedback-ID (read by Gmail's feedback loop) and the
# CFBL fields (RFC 9477 section 3.1: CFBL-Address must be signed).
SIGNED_HEADERS: tuple[str, ...] = (
    "from", "sender", "reply-to", "subject", "date", "message-id", "to", "cc",
    "mime-version", "content-type", "content-transfer-encoding",
    "resent-date", "resent-from", "resent-sender", "resent-to", "resent-cc",
    "resent-message-id", "in-reply-to", "references",
    "list-id", "list-help", "list-unsubscribe", "list-unsubscribe-post", "list-subscribe",
    "list-post", "list-owner", "list-archive", "feedback-id", "cfbl-address",
    "cfbl-feedback-id",
)  # fmt: skip
_SIGNED = frozenset(SIGNED_HEADERS)
# Fields a message has at most once (RFC 5322 section 3.6, RFC 2045, RFC 8058): when
# present they are listed once more than they occur ("over-signed"), so a copy added in
# transit breaks the signature instead of being shown to the reader. From is always
# over-signed (RFC 6376 section 8.15).
_OVERSIGNED = frozenset(
    {
        "from", "sender", "reply-to", "subject", "date", "message-id", "to", "cc",
        "mime-version", "content-type", "content-transfer-encoding", "in-reply-to",
        "references", "list-unsubscribe", "list-unsubscribe-post", "cfbl-address",
        "cfbl-feedback-id",
    }
)  # fmt: skip
_TEMPLATES_KEPT = 64  # per signer: distinct h= lists (message shapes) seen recently
_BH_LENGTH = 44  # base64 of a SHA-256 digest
_FOLD_AT = 78  # RFC 5322 section 2.1.1: lines SHOULD be at most 78 characters
# RFC 6376 section 2.8: WSP is SP or HTAB. Only runs that change are matched (a tab, or
# two or more blanks): single spaces, the usual case, are left alone.
_WSP_TO_SPACE = re.compile(rb"\t[ \t]*| [ \t]+")
_FIELD_NAME = re.compile(rb"[!-9;-~]+")  # RFC 5322 section 3.6.8: printable ASCII but ':'

HeaderField: TypeAlias = tuple[str, bytes]


class DkimSigningError(ValueError):
    """A message that cannot be signed as it is: a bare CR or LF, a malformed header
    section, or no From field. Signing it would give a signature that breaks (or means
    nothing) on the way, so the caller must treat the message as unsendable."""


def canonicalize_body_relaxed(body: bytes) -> bytes:
    """The "relaxed" body canonicalisation of RFC 6376 section 3.4.4 for a body with CRLF
    line endings: whitespace at line ends is dropped, other WSP runs become one SP, empty
    lines at the end are dropped, and a non-empty result ends with CRLF. An empty body
    (or one of only empty lines) canonicalises to nothing; "simple" would give CRLF."""
    if b"\t" in body or b"  " in body:  # the regex costs ~5 ns/byte; most bodies need none
        body = _WSP_TO_SPACE.sub(b" ", body)
    body = body.replace(b" \r\n", b"\r\n")
    # After the line above, the tail is blank lines and at most one space on the last line.
    body = body.rstrip(b"\r\n ")
    return body + b"\r\n" if body else b""


def canonicalize_header_relaxed(field: bytes) -> bytes:
    """The "relaxed" canonical form of one header field (RFC 6376 section 3.4.2): name in
    lower case, value unfolded, WSP runs reduced to one SP, WSP around the colon and at
    the ends of the value removed; always ends with CRLF. ``field`` is the field as in the
    message (``Name: value`` with its folding and, optionally, its final CRLF)."""
    name, _, value = field.partition(b":")
    value = value.replace(b"\r\n", b"")
    if b"\t" in value or b"  " in value:  # most values have single spaces only
        value = _WSP_TO_SPACE.sub(b" ", value)
    value = value.strip(b" ")
    return name.rstrip(b" \t").lower() + b":" + value + b"\r\n"


def body_hash(body: bytes) -> str:
    """The ``bh=`` value: base64 of the SHA-256 of the relaxed canonical body."""
    digest = hashlib.sha256(canonicalize_body_relaxed(body)).digest()
    return base64.b64encode(digest).decode("ascii")


def split_message(message: bytes) -> tuple[list[HeaderField], bytes]:
    """The header fields of ``message`` in order, each as (lower-case name, raw bytes
    with folding and final CRLF), and the body after the empty line.

    A message without an empty line is all header. Raises ``DkimSigningError`` for a
    header section that does not end with CRLF, begins with a continuation line, or has a
    line without a field name and colon (RFC 5322 section 2.2).
    """
    if message.startswith(b"\r\n"):
        return [], message[2:]
    end = message.find(b"\r\n\r\n")
    if end < 0:
        if not message.endswith(b"\r\n"):
            raise DkimSigningError("The message's header section does not end with CRLF.")
        head, body = message, b""
    else:
        head, body = message[: end + 2], message[end + 4 :]
    fields: list[HeaderField] = []
    for line in head[:-2].split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            if not fields:
                raise DkimSigningError("The message begins with a continuation line.")
            name, raw = fields[-1]
            fields[-1] = (name, raw + line + b"\r\n")
            continue
        name_bytes, colon, _ = line.partition(b":")
        name_bytes = name_bytes.rstrip(b" \t")  # obsolete syntax allows WSP before ':'
        if not colon or not _FIELD_NAME.fullmatch(name_bytes):
            raise DkimSigningError("The message has a header line without a field name.")
        fields.append((name_bytes.decode("latin-1").lower(), line + b"\r\n"))
    return fields, body


def signed_header_names(fields: Sequence[HeaderField]) -> list[str]:
    """The ``h=`` list for a message with ``fields``: every occurrence of each field of
    ``SIGNED_HEADERS`` that is present, plus one more for From and the other single-use
    fields (over-signing). Raises ``DkimSigningError`` when there is no From field,
    which every signature must cover (RFC 6376 section 5.4)."""
    counts: dict[str, int] = {}
    for name, _ in fields:
        if name in _SIGNED:
            counts[name] = counts.get(name, 0) + 1
    if "from" not in counts:
        raise DkimSigningError("The message has no From header field.")
    names: list[str] = []
    for name in SIGNED_HEADERS:
        count = counts.get(name)
        if count:
            names.extend([name] * (count + 1 if name in _OVERSIGNED else count))
    return names


def select_headers(fields: Sequence[HeaderField], names: Sequence[str]) -> bytes:
    """The canonical header data for ``h=`` ``names``: for each name, the last occurrence
    not used yet, so repeated names take fields from the bottom up; a name with no
    occurrence left contributes nothing (RFC 6376 section 5.4.2)."""
    unused: dict[str, list[bytes]] = {}
    for name, raw in fields:
        unused.setdefault(name, []).append(raw)
    selected = []
    for name in names:
        occurrences = unused.get(name)
        if occurrences:
            selected.append(canonicalize_header_relaxed(occurrences.pop()))
    return b"".join(selected)


class DkimSigner:
    """Signs messages with one or more keys of a domain; build once, sign many.

    Keys are parsed when the signer is built. Signatures are ordered Ed25519 first, then
    RSA (each in the order given); each is a separate DKIM-Signature field.
    """

    __slots__ = ("_fields", "_signers")

    def __init__(self, keys: Iterable[DkimKey]) -> None:
        """Raises ``DkimKeyError`` for a key ``load_signer`` refuses, or when there is
        no key at all."""
        signers = [load_signer(key) for key in keys]
        if not signers:
            raise DkimKeyError("A DKIM signer needs at least one key.")
        signers.sort(key=lambda signer: signer.algorithm != "ed25519-sha256")
        self._signers: tuple[Signer, ...] = tuple(signers)
        self._fields: dict[tuple[tuple[str, ...], int], list[_FieldTemplate]] = {}

    @property
    def signers(self) -> tuple[Signer, ...]:
        """The loaded keys, in the order their signatures appear."""
        return self._signers

    def sign(self, message: bytes, *, timestamp: int | None = None) -> bytes:
        """``message`` with one DKIM-Signature field per key in front of it; the message
        bytes themselves are unchanged.

        ``timestamp`` is the ``t=`` value (Unix seconds, default now). Each signature is
        ``c=relaxed/relaxed`` with ``d=``, ``s=``, ``t=``, ``h=`` and ``bh=``, no ``x=``,
        ``i=`` or ``l=``, folded on whitespace into CRLF lines of at most 78 characters.
        Raises ``DkimSigningError`` for a message with a bare CR or LF, a malformed
        header section or no From field, and ``ValueError`` for a negative timestamp.
        """
        if not _crlf_only(message):
            # A relay would "repair" the line ending and the signature with it; and a bare
            # line ending is how SMTP smuggling hides a second message.
            raise DkimSigningError("The message has a bare CR or LF.")
        fields, body = split_message(message)
        names = tuple(signed_header_names(fields))
        headers = select_headers(fields, names)
        bh = body_hash(body)
        now = int(time.time()) if timestamp is None else timestamp
        if not 0 <= now < 10**12:  # RFC 6376 section 3.5: at most 12 digits
            raise ValueError(f"Not a usable DKIM timestamp: {timestamp}.")
        stamp = str(now)
        fields_out = []
        for signer, template in zip(self._signers, self._templates(names, len(stamp)), strict=True):
            unsigned = template.fill(stamp, bh)
            # RFC 6376 section 3.7: the signature field itself comes last, with an empty
            # b= value and without its final CRLF.
            data = headers + template.fill_canonical(stamp, bh)
            signature = base64.b64encode(signer.sign(data)).decode("ascii")
            fields_out.append(f"{unsigned}{_fold_b(signature)}\r\n")
        return "".join(fields_out).encode("ascii") + message

    def _templates(self, names: tuple[str, ...], stamp_length: int) -> list[_FieldTemplate]:
        """The signature fields for ``h=`` ``names`` and a ``t=`` of ``stamp_length`` digits,
        built (and folded) once: most messages of a domain sign the same header names."""
        key = (names, stamp_length)
        templates = self._fields.get(key)
        if templates is None:
            if len(self._fields) >= _TEMPLATES_KEPT:
                self._fields.clear()
            templates = [_FieldTemplate.of(s, names, stamp_length) for s in self._signers]
            self._fields[key] = templates
        return templates


@dataclass(frozen=True, slots=True)
class _FieldTemplate:
    """One signer's DKIM-Signature field up to ``b=``, folded, with the places of ``t=``
    and ``bh=`` left as runs of NUL (never in a field, and not WSP, so folding and relaxed
    canonicalisation treat them as they treat the digits and base64 that replace them)."""

    raw: tuple[str, str, str]
    canonical: tuple[bytes, bytes, bytes]

    @classmethod
    def of(cls, signer: Signer, names: Sequence[str], stamp_length: int) -> _FieldTemplate:
        stamp, bh = "\0" * stamp_length, "\1" * _BH_LENGTH
        field = _signature_field(signer, stamp, names, bh)
        head, rest = field.split(stamp)
        middle, tail = rest.split(bh)
        canonical = canonicalize_header_relaxed(field.encode("ascii"))[:-2]
        c_head, c_rest = canonical.split(stamp.encode())
        c_middle, c_tail = c_rest.split(bh.encode())
        return cls((head, middle, tail), (c_head, c_middle, c_tail))

    def fill(self, stamp: str, bh: str) -> str:
        head, middle, tail = self.raw
        return f"{head}{stamp}{middle}{bh}{tail}"

    def fill_canonical(self, stamp: str, bh: str) -> bytes:
        head, middle, tail = self.canonical
        return b"".join((head, stamp.encode("ascii"), middle, bh.encode("ascii"), tail))


def _crlf_only(message: bytes) -> bool:
    """True when every CR and every LF of ``message`` is part of a CRLF pair. Counting
    runs at memory speed, where a regex with look-around costs ~20 ns/byte."""
    pairs = message.count(b"\r\n")  # CRLF cannot overlap itself
    return message.count(b"\r") == pairs == message.count(b"\n")


def _signature_field(signer: Signer, timestamp: str, names: Sequence[str], bh: str) -> str:
    """The DKIM-Signature field up to ``b=`` (which starts its own line), folded."""
    lines = ["DKIM-Signature:"]

    def put(token: str, glue: str = " ") -> None:
        if len(lines[-1]) + len(glue) + len(token) <= _FOLD_AT:
            lines[-1] += glue + token
        else:
            lines.append(f" {token}")

    for token in (
        "v=1;",
        f"a={signer.algorithm};",
        "c=relaxed/relaxed;",
        f"d={signer.domain};",
        f"s={signer.selector};",
        f"t={timestamp};",
    ):
        put(token)
    # RFC 6376 section 3.5 allows FWS after each ':' of h=, so a fold goes there.
    header_tokens = [f"{name}:" for name in names]
    header_tokens[0] = f"h={header_tokens[0]}"
    header_tokens[-1] = f"{header_tokens[-1][:-1]};"
    put(header_tokens[0])
    for token in header_tokens[1:]:
        put(token, glue="")
    put(f"bh={bh};")
    lines.append(" b=")
    return "\r\n".join(lines)


def _fold_b(signature: str) -> str:
    """The base64 ``b=`` value split with FWS, which RFC 6376 section 2.4 allows inside
    base64: the first chunk fills the `` b=`` line, the others lines of one SP + 77."""
    first = _FOLD_AT - len(" b=")
    rest = _FOLD_AT - 1
    chunks = [signature[:first]]
    chunks += [signature[i : i + rest] for i in range(first, len(signature), rest)]
    return "\r\n ".join(chunks)
