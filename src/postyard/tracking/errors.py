"""Errors of the tracking host."""

from __future__ import annotations

from postyard.core.errors import NotFound


class UnknownTrackingLink(NotFound):
    """A token that does not verify, names nothing we sent, or names another tenant's
    message or a link that was not in the message. Raised before anything is written."""

    code = "tracking_link_not_found"
