"""Postyard: a self-hosted, multi-tenant email platform."""

__version__ = "0.1.0"
