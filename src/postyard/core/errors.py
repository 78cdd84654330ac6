"""One error hierarchy for client-visible failures, rendered in one place.

``code`` is the stable machine name (Resend's error names where Resend has one) and
``status`` the HTTP status. Client mistakes are never 500s.
"""

from __future__ import annotations


class AppError(Exception):
    """A failure the caller can act on. Subclasses fix ``code`` and ``status``."""

    code: str = "application_error"
    status: int = 500

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers


class ValidationFailed(AppError):
    code = "validation_error"
    status = 422


class MalformedRequest(AppError):
    code = "validation_error"
    status = 400


class PayloadTooLarge(AppError):
    code = "payload_too_large"
    status = 413


class NotFound(AppError):
    code = "not_found"
    status = 404


class MethodNotAllowed(AppError):
    code = "method_not_allowed"
    status = 405


class MissingApiKey(AppError):
    code = "missing_api_key"
    status = 401


class InvalidApiKey(AppError):
    # Resend answers 403 here; 401 is what HTTP means by "these credentials are not valid"
    # (RFC 9110 §15.5.2), and what a revoked key must get. The name stays Resend's.
    code = "invalid_api_key"
    status = 401


class RestrictedApiKey(AppError):
    code = "restricted_api_key"
    status = 401


class OrganizationSuspended(AppError):
    code = "organization_suspended"
    status = 403


class Conflict(AppError):
    code = "conflict"
    status = 409


class RateLimitExceeded(AppError):
    code = "rate_limit_exceeded"
    status = 429


class ServiceUnavailable(AppError):
    code = "service_unavailable"
    status = 503


class ConfigurationError(Exception):
    """Bad settings or environment found at start-up: one readable line, non-zero exit."""
