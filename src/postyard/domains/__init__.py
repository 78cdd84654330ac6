"""Domains: sending domains, their DNS records and verification, and DKIM."""
