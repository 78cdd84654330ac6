"""Suppression: per-tenant addresses that must not receive mail (hard bounces, complaints,
unsubscribes, manual entries), enforced by sending on every path.

Other domains use only what this module exports.
"""

from __future__ import annotations

from postyard.suppression.service import (
    suppress,
    suppressed_among,
    suppression_reasons,
    suppression_reasons_unscoped,
)
from postyard.suppression.types import SuppressionReason, SuppressionView

__all__ = [
    "SuppressionReason",
    "SuppressionView",
    "suppress",
    "suppressed_among",
    "suppression_reasons",
    "suppression_reasons_unscoped",
]
