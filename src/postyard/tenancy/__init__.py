"""Tenancy: organisations (the tenants), API keys and authentication."""
