"""RFC 3464 delivery status notifications (pure).

A DSN is ``multipart/report; report-type=delivery-status`` whose ``message/delivery-status``
part holds one block of per-message fields (``Reporting-MTA``, ``Arrival-Date``) and one
block per recipient (``Final-Recipient``, ``Original-Recipient``, ``Action``, ``Status``,
``Diagnostic-Code``, ``Remote-MTA``), blocks separated by blank lines (section 2.1). The
report-type parameter is not required here: Postfix, Exim, Exchange, Gmail and Yahoo all
send the part, and some relays rewrite the top-level type.
"""

from __future__ import annotations

import re
from email.message import Message

from postyard.inbound.mime import PARSE_ERRORS, original_headers, parts, quoted_original
from postyard.inbound.types import Action, BounceReport, RecipientStatus

STATUS_PARTS = frozenset({"message/delivery-status", "message/global-delivery-status"})
ORIGINAL_PARTS = frozenset(
    {"message/rfc822", "message/global", "text/rfc822-headers", "message/global-headers"}
)
MAX_RECIPIENTS = 100
# Not inside an IP address (10.5.1.1 is no status code).
_STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?!\.?\d)")
_BASIC = re.compile(r"(?:^|[\s#'])([245])\d\d(?=[\s:-]|$)")

Fields = dict[str, str]


def _unfolded_blocks(text: str) -> list[Fields]:
    """Blocks of ``Name: value`` lines (folded lines joined), separated by blank lines."""
    blocks: list[Fields] = []
    current: Fields = {}
    last: str | None = None
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            if current:
                blocks.append(current)
            current, last = {}, None
            continue
        if line[:1] in (" ", "\t") and last is not None:
            current[last] += " " + line.strip()
            continue
        name, colon, value = line.partition(":")
        if not colon:
            continue
        last = name.strip().lower()
        current.setdefault(last, value.strip())
    if current:
        blocks.append(current)
    return blocks


def _fields_of(block: Message) -> tuple[Fields, str]:
    fields: Fields = {}
    for name, value in block.items():
        fields.setdefault(name.strip().lower(), " ".join(str(value).split()))
    payload = block.get_payload()
    return fields, payload if isinstance(payload, str) else ""


def _status_blocks(part: Message) -> list[Fields]:
    """The field blocks of a delivery-status part, however the stdlib split it."""
    payload = part.get_payload()
    blocks: list[Fields] = []
    if isinstance(payload, str):
        return _unfolded_blocks(payload)
    for item in payload if isinstance(payload, list) else []:
        if not isinstance(item, Message):
            continue
        fields, rest = _fields_of(item)
        if fields:
            blocks.append(fields)
        blocks.extend(_unfolded_blocks(rest))  # a block the stdlib left as body text
    return blocks


def _typed_value(value: str | None) -> str | None:
    """The value after an RFC 3464 type (``rfc822; a@b`` → ``a@b``, ``smtp; 550 …``)."""
    if value is None:
        return None
    kind, semicolon, rest = value.partition(";")
    text = (rest if semicolon and " " not in kind.strip() else value).strip()
    return text.strip("<>").strip() if "@" in text and " " not in text else text or None


def normalise_status(status: str | None, diagnostic: str | None) -> str | None:
    """The RFC 3463 code of a ``Status`` field, else of the diagnostic text (or its basic
    SMTP code's class: ``550`` → ``5.0.0``); None when neither has one."""
    for text in (status, diagnostic):
        if text:
            match = _STATUS.search(text)
            if match:
                return ".".join(match.groups())
    if diagnostic:
        basic = _BASIC.search(diagnostic)
        if basic:
            return f"{basic.group(1)}.0.0"
    return None


def _action(value: str | None, status: str | None) -> Action | None:
    word = (value or "").split()[0].lower() if value and value.split() else ""
    try:
        return Action(word)
    except ValueError:
        pass
    if status is None:
        return None
    return {"5": Action.FAILED, "4": Action.DELAYED, "2": Action.DELIVERED}[status[0]]


def recipient_status(fields: Fields) -> RecipientStatus | None:
    """One per-recipient block as a value; None when it names no action and no status."""
    diagnostic = _typed_value(fields.get("diagnostic-code"))
    status = normalise_status(fields.get("status"), diagnostic)
    action = _action(fields.get("action"), status)
    if action is None:
        return None
    if status is None:
        status = (
            "5.0.0" if action is Action.FAILED else "4.0.0" if action is Action.DELAYED else "2.0.0"
        )
    return RecipientStatus(
        action=action,
        status=status,
        diagnostic=diagnostic,
        final_recipient=_typed_value(fields.get("final-recipient")),
        original_recipient=_typed_value(fields.get("original-recipient")),
        remote_mta=_typed_value(fields.get("remote-mta")),
    )


def parse(message: Message) -> BounceReport | None:
    """The DSN in ``message``, or None when it has no delivery-status part with at least
    one readable recipient block."""
    status_part: Message | None = None
    original: Message | None = None
    for part in parts(message):
        kind = part.get_content_type()
        if kind in STATUS_PARTS and status_part is None:
            status_part = part
        elif kind in ORIGINAL_PARTS and original is None:
            original = quoted_original(part)
    if status_part is None:
        return None
    try:
        blocks = _status_blocks(status_part)
    except PARSE_ERRORS:
        return None
    reporting_mta = None
    recipients: list[RecipientStatus] = []
    for block in blocks:
        if "reporting-mta" in block and reporting_mta is None:
            reporting_mta = _typed_value(block["reporting-mta"])
        if "action" in block or "status" in block:
            found = recipient_status(block)
            if found is not None and len(recipients) < MAX_RECIPIENTS:
                recipients.append(found)
    if not recipients:
        return None
    return BounceReport(
        format="rfc3464",
        recipients=tuple(recipients),
        reporting_mta=reporting_mta,
        original=original_headers(original),
    )
