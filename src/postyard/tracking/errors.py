"""Errors of the tracking host. Both leave nothing written."""

from __future__ import annotations

from postyard.core.errors import AppError, NotFound


class UnknownTrackingLink(NotFound):
    """A token that does not verify, names nothing we sent, or names another tenant's
    message or a link that was not in the message."""

    code = "tracking_link_not_found"


class ExpiredUnsubscribeLink(AppError):
    """An authentic unsubscribe link older than the configured maximum age."""

    code = "unsubscribe_link_expired"
    status = 410
