"""Inbound: the MX listener's reports. Bounces (RFC 3464 DSNs and the common non-standard
formats), complaints (RFC 5965 ARF) and mailto unsubscribes arrive at the return-path
domains; parsing is pure (``reports``, ``dsn``, ``arf``, ``heuristics``, ``classify``),
``intake`` turns one report into its effects in one tenant transaction, and ``handler`` is
the aiosmtpd adapter (``postyard.mxd`` starts it).
"""
