"""What reports say, as values (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Action(StrEnum):
    """RFC 3464 section 2.3.3."""

    FAILED = "failed"
    DELAYED = "delayed"
    DELIVERED = "delivered"
    RELAYED = "relayed"
    EXPANDED = "expanded"


@dataclass(frozen=True, slots=True)
class RecipientStatus:
    """What a report says about one recipient."""

    action: Action
    status: str
    """RFC 3463 ``class.subject.detail``; ``5.0.0``/``4.0.0`` when only the class is known."""
    diagnostic: str | None
    final_recipient: str | None
    original_recipient: str | None = None
    remote_mta: str | None = None


@dataclass(frozen=True, slots=True)
class OriginalHeaders:
    """What a report quotes of the message it is about (often redacted)."""

    message_id: str | None = None
    return_path: str | None = None
    feedback_id: str | None = None
    """``CFBL-Feedback-ID`` (RFC 9477)."""


@dataclass(frozen=True, slots=True)
class BounceReport:
    format: str
    """Where it came from: ``rfc3464`` or the heuristic that recognised it (``exim``, …)."""
    recipients: tuple[RecipientStatus, ...]
    reporting_mta: str | None = None
    original: OriginalHeaders | None = None


@dataclass(frozen=True, slots=True)
class ComplaintReport:
    feedback_type: str
    """Lowercase ``Feedback-Type`` (``abuse``, ``fraud``, ``virus``, ``not-spam``, …)."""
    original_rcpt_to: tuple[str, ...]
    user_agent: str | None = None
    original_mail_from: str | None = None
    reported_domain: str | None = None
    source_ip: str | None = None
    arrival_date: str | None = None
    original: OriginalHeaders | None = None

    @property
    def is_complaint(self) -> bool:
        """Feedback types that mean the recipient does not want the mail (not ``not-spam``,
        and not ``other``, which says nothing)."""
        return self.feedback_type in {"abuse", "fraud", "virus"}


@dataclass(frozen=True, slots=True)
class NotAReport:
    reason: str
    """``unparsable`` (not a readable message) or ``not_a_report`` (readable, no report)."""


Report = BounceReport | ComplaintReport | NotAReport
