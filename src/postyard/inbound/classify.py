"""What a reported failure means for the recipient (pure): the bounce type and sub-type of
Resend's and SES's vocabulary, and whether the address is suppressed.

Suppressed: permanent failures that say the address does not exist or cannot take mail
(RFC 3463 5.1.x, "user unknown" texts) and permanent failures with no more specific reason.
Not suppressed: a full mailbox (5.2.2; RFC 3463 calls it persistent, mailboxes get emptied),
a message too large (5.2.3, 5.3.4: the next message may fit), policy and reputation blocks
(5.7.x, "spam", "blocked": not the recipient's fault), and a message that expired after
temporary failures (``failed`` with a 4.x.x status). Delays are never suppressed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from postyard.inbound.types import Action, RecipientStatus


class BounceType(StrEnum):
    PERMANENT = "Permanent"
    TRANSIENT = "Transient"


class SubType(StrEnum):
    GENERAL = "General"
    NO_EMAIL = "NoEmail"
    MAILBOX_FULL = "MailboxFull"
    MESSAGE_TOO_LARGE = "MessageTooLarge"
    CONTENT_REJECTED = "ContentRejected"
    EXPIRED = "Expired"


@dataclass(frozen=True, slots=True)
class Verdict:
    type: BounceType
    sub_type: SubType
    suppress: bool


_NO_EMAIL_CODES = frozenset({"5.1.0", "5.1.1", "5.1.2", "5.1.3", "5.1.6", "5.1.10", "5.2.1"})
_NO_EMAIL_TEXT = re.compile(
    r"user unknown|unknown user|no such (?:user|mailbox|recipient)|does not exist|"
    r"doesn't exist|not found|invalid (?:recipient|mailbox|address)|recipient rejected|"
    r"address rejected|mailbox unavailable|account (?:is )?disabled|no mailbox|"
    r"recipnotfound|recipientnotfound|unrouteable|unknown recipient|"
    r"(?:doesn't|does not) have an? [\w.-]{1,60} account",
    re.IGNORECASE,
)
_BLOCK_TEXT = re.compile(
    r"\bspam\b|blocked|block ?list|blacklist|denylist|reputation|\bpolicy\b|"
    r"\brbl\b|spamhaus|dmarc|not authori[sz]ed|rejected for policy",
    re.IGNORECASE,
)


def classify(report: RecipientStatus) -> Verdict:
    """The verdict for one recipient of a report whose action is ``failed`` or
    ``delayed`` (anything else is not a failure and gets a transient verdict)."""
    if report.action is not Action.FAILED:
        return Verdict(BounceType.TRANSIENT, SubType.GENERAL, suppress=False)
    status = report.status
    text = report.diagnostic or ""
    if status.startswith("4."):
        return Verdict(BounceType.PERMANENT, SubType.EXPIRED, suppress=False)
    if status in {"5.2.2"}:
        return Verdict(BounceType.PERMANENT, SubType.MAILBOX_FULL, suppress=False)
    if status in {"5.2.3", "5.3.4"}:
        return Verdict(BounceType.PERMANENT, SubType.MESSAGE_TOO_LARGE, suppress=False)
    if status in _NO_EMAIL_CODES:
        return Verdict(BounceType.PERMANENT, SubType.NO_EMAIL, suppress=True)
    if status.startswith("5.7.") or _BLOCK_TEXT.search(text):
        return Verdict(BounceType.PERMANENT, SubType.CONTENT_REJECTED, suppress=False)
    if _NO_EMAIL_TEXT.search(text):
        return Verdict(BounceType.PERMANENT, SubType.NO_EMAIL, suppress=True)
    return Verdict(BounceType.PERMANENT, SubType.GENERAL, suppress=True)
