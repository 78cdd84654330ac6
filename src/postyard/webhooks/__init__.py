"""Webhooks: signed event delivery to users' endpoints."""
