"""Sending: the Resend-compatible email API, message building and the delivery ledger."""
