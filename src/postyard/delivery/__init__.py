"""Delivery: the MTA side — routes, SMTP transport, retry policy and the delivery worker."""
