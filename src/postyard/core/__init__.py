"""Shared infrastructure. Imports no domain package."""
