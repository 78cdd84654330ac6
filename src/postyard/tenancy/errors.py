"""Errors of the tenancy domain."""

from __future__ import annotations

from postyard.core.errors import Conflict


class SlugTaken(Conflict):
    code = "slug_taken"
