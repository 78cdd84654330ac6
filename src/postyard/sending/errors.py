"""Errors of the sending domain, with Resend's names."""

from __future__ import annotations

from postyard.core.errors import AppError, ValidationFailed


class InvalidFromAddress(ValidationFailed):
    code = "invalid_from_address"


class InvalidAttachment(ValidationFailed):
    code = "invalid_attachment"


class MissingRequiredField(ValidationFailed):
    code = "missing_required_field"


class InvalidIdempotencyKey(AppError):
    code = "invalid_idempotency_key"
    status = 400


class InvalidIdempotentRequest(AppError):
    code = "invalid_idempotent_request"
    status = 409


class ConcurrentIdempotentRequests(AppError):
    code = "concurrent_idempotent_requests"
    status = 409


class DomainNotVerified(AppError):
    code = "validation_error"
    status = 403
