"""Errors of the webhooks API (422s name what was wrong with a stable code)."""

from __future__ import annotations

from postyard.core.errors import Conflict, NotFound, ValidationFailed


class InvalidWebhookEndpoint(ValidationFailed):
    code = "invalid_webhook_url"


class InvalidWebhookEvent(ValidationFailed):
    code = "invalid_webhook_event"


class WebhookNotFound(NotFound):
    pass


class WebhookDisabled(Conflict):
    code = "webhook_disabled"
