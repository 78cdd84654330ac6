"""Every reply the submission server sends, in one table.

Replies carry RFC 3463 enhanced status codes (advertised as ENHANCEDSTATUSCODES, RFC 2034),
except where RFC 2034 section 3 leaves them out: the greeting, the replies to HELO and EHLO,
and 3xx intermediate replies. aiosmtpd writes some replies itself, without enhanced codes;
``translate`` maps each of those texts to ours, so the client sees only replies from here
whichever layer answered.
"""

from __future__ import annotations

import uuid

GREETING_TEXT = "ESMTP Postyard"

# Connection (RFC 5321 section 3.8: a server that closes says 421 first)
OK = "250 2.0.0 OK"
BYE = "221 2.0.0 Bye"
TOO_MANY_CONNECTIONS = "421 4.7.0 Too many connections from your address; try again later"
TOO_MANY_MESSAGES = "421 4.7.0 Too many messages on this connection; reconnect to send more"
TIMEOUT = "421 4.4.2 Timeout waiting for the client; closing connection"
SHUTTING_DOWN = "421 4.3.2 Service shutting down; try again later"

# Commands
UNKNOWN_COMMAND = "500 5.5.2 Command not recognized"
SYNTAX_ERROR = "500 5.5.2 Syntax error"
LINE_TOO_LONG = "500 5.5.2 Line too long (RFC 5321 section 4.5.3.1.6)"
SEND_EHLO_FIRST = "503 5.5.1 Send EHLO first"
NESTED_MAIL = "503 5.5.1 Sender already given; send RSET to start over"
NEED_MAIL = "503 5.5.1 Send MAIL FROM first"
NEED_RCPT = "503 5.5.1 Send RCPT TO first"
NOT_IMPLEMENTED = "502 5.5.1 Command not implemented"
LOCAL_ERROR = "451 4.3.0 Local error in processing; try again later"

# STARTTLS (RFC 3207)
READY_FOR_TLS = "220 2.0.0 Ready to start TLS"
TLS_UNAVAILABLE = "454 4.7.0 TLS not available"
TLS_ALREADY_ACTIVE = "503 5.5.1 TLS already active"

# AUTH (RFC 4954 section 6)
AUTH_SUCCEEDED = "235 2.7.0 Authentication successful"
AUTH_REQUIRED = "530 5.7.0 Authentication required"
AUTH_INVALID = "535 5.7.8 Authentication credentials invalid"
AUTH_SUSPENDED = "535 5.7.8 Organization suspended; its API keys are refused"
AUTH_LOCKED_OUT = "454 4.7.0 Too many failed authentication attempts; try again later"
AUTH_TEMPORARY_FAILURE = "454 4.7.0 Temporary authentication failure"
AUTH_NEEDS_TLS = "538 5.7.11 Encryption required for requested authentication mechanism"
AUTH_NEEDS_EHLO = "503 5.5.1 AUTH needs EHLO"
AUTH_ALREADY_DONE = "503 5.5.1 Already authenticated"
AUTH_IN_TRANSACTION = "503 5.5.1 AUTH is not permitted during a mail transaction"
AUTH_SYNTAX = "501 5.5.4 Syntax: AUTH mechanism [initial-response]"
AUTH_MECHANISM = "504 5.5.4 Unrecognized authentication type; use PLAIN or LOGIN"
AUTH_UNDECODABLE = "501 5.5.2 Cannot decode the authentication response"
AUTH_LINE_TOO_LONG = "500 5.5.6 Authentication exchange line is too long"

# MAIL and RCPT
SENDER_OK = "250 2.1.0 Sender OK"
RECIPIENT_OK = "250 2.1.5 Recipient OK"
BAD_SENDER = "501 5.1.7 Bad sender address syntax"
BAD_RECIPIENT = "501 5.1.3 Bad recipient address syntax"
NEEDS_SMTPUTF8 = "553 5.6.7 A non-ASCII address needs the SMTPUTF8 parameter (RFC 6531)"
TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"
TOO_BIG = "552 5.3.4 Message size exceeds fixed maximum message size"

# DATA
BARE_LINE_ENDING = (
    "554 5.5.2 Bare CR or LF in message data; lines must end with CRLF (RFC 5321 section 2.3.8)"
)
NOT_STORED = "451 4.3.0 Message not stored; try again later"

# The inbound MX (bounces, complaints, mailto unsubscribes)
REPORT_ACCEPTED = "250 2.0.0 Report accepted"
MX_UNKNOWN_RECIPIENT = "550 5.1.1 No such recipient here"
MX_RELAY_DENIED = "550 5.7.1 Relaying denied"
MX_LOOKUP_FAILED = "451 4.3.0 Recipient lookup failed; try again later"
IDEMPOTENCY_MISMATCH = "550 5.7.0 Resend-Idempotency-Key already used for a different message"
SENDER_DOMAIN_NOT_VERIFIED = "553 5.7.1 Sender domain is not a verified domain of this organization"
IDEMPOTENCY_IN_USE = "451 4.7.0 Resend-Idempotency-Key in use by a message in progress; retry"


def queued(message_id: uuid.UUID) -> str:
    """The reply after the message is committed; ``message_id`` is the API's email id."""
    return f"250 2.0.0 Ok: queued as {message_id}"


def message_refused(reason: str) -> str:
    """A refused message (554 5.6.0); ``reason`` is shown to the client on one line."""
    printable = "".join(c if " " <= c <= "~" else "?" for c in reason)
    return f"554 5.6.0 {printable[:400]}"


# aiosmtpd's own reply texts (1.4.x), exactly, and ours.
_AIOSMTPD_EXACT = {
    "250 OK": OK,
    "221 Bye": BYE,
    "500 Error: bad syntax": SYNTAX_ERROR,
    "500 Command line too long": LINE_TOO_LONG,
    "500 Line too long (see RFC5321 4.5.3.1.6)": LINE_TOO_LONG,
    "500 Error: strict ASCII mode": "500 5.6.7 Non-ASCII data without SMTPUTF8",
    "503 Error: send HELO first": SEND_EHLO_FIRST,
    "503 Error: send EHLO first": SEND_EHLO_FIRST,
    "503 Error: nested MAIL command": NESTED_MAIL,
    "503 Error: need MAIL command": NEED_MAIL,
    "503 Error: need RCPT command": NEED_RCPT,
    "501 Syntax: HELO hostname": "501 5.5.4 Syntax: HELO hostname",
    "501 Syntax: EHLO hostname": "501 5.5.4 Syntax: EHLO hostname",
    "501 Syntax: QUIT": "501 5.5.4 Syntax: QUIT",
    "501 Syntax: RSET": "501 5.5.4 Syntax: RSET",
    "501 Syntax: DATA": "501 5.5.4 Syntax: DATA",
    "501 Syntax: STARTTLS": "501 5.5.4 Syntax: STARTTLS",
    "501 Syntax: VRFY <address>": "501 5.5.4 Syntax: VRFY <address>",
    "501 Error: BODY can only be one of 7BIT, 8BITMIME": "501 5.5.4 BODY must be 7BIT or 8BITMIME",
    "501 Error: SMTPUTF8 takes no arguments": "501 5.5.4 SMTPUTF8 takes no value",
    "501 Error: SMTPUTF8 disabled": "501 5.5.4 SMTPUTF8 not supported",
    "552 Error: message size exceeds fixed maximum message size": TOO_BIG,
    "552 Error: Too much mail data": TOO_BIG,
    "555 MAIL FROM parameters not recognized or not implemented": (
        "555 5.5.4 MAIL FROM parameters not recognized or not implemented"
    ),
    "555 RCPT TO parameters not recognized or not implemented": (
        "555 5.5.4 RCPT TO parameters not recognized or not implemented"
    ),
    "554 Command refused due to lack of security": "554 5.7.0 Command refused; TLS failed",
    "530 Must issue a STARTTLS command first": "530 5.7.0 Must issue a STARTTLS command first",
    "220 Ready to start TLS": READY_FOR_TLS,
    "454 TLS not available": TLS_UNAVAILABLE,
    "502 EXPN not implemented": NOT_IMPLEMENTED,
    "252 Cannot VRFY user, but will accept message and attempt delivery": (
        "252 2.1.5 Cannot VRFY user, but will accept message and attempt delivery"
    ),
}
# Texts that end in client input; (prefix, our reply, whether the rest of the line is kept).
_AIOSMTPD_PREFIX = (
    ('500 Error: command "', UNKNOWN_COMMAND, False),
    ("501 Syntax: MAIL FROM:", "501 5.5.4 Syntax: MAIL FROM:<address> [parameters]", False),
    ("501 Syntax: RCPT TO:", "501 5.5.4 Syntax: RCPT TO:<address>", False),
    ("502 Could not VRFY ", "502 5.5.4 Cannot VRFY that address", False),
    ("250 Syntax: ", "214 2.0.0 Syntax: ", True),
    ("250 Supported commands: ", "214 2.0.0 Supported commands: ", True),
    ("501 Supported commands: ", "501 5.5.4 Supported commands: ", True),
    # handle_exception failed too: say nothing of the internals.
    ("500 Error: (", LOCAL_ERROR, False),
)
_MALFORMED_ADDRESS = "553 5.1.3 Error: malformed address"


def translate(reply: str, *, command: str | None = None) -> str:
    """Our reply for one of aiosmtpd's (``command``: the SMTP verb being answered); other
    replies, ours among them, are returned unchanged."""
    mapped = _AIOSMTPD_EXACT.get(reply)
    if mapped is not None:
        return mapped
    if reply == _MALFORMED_ADDRESS:
        return BAD_SENDER if command == "MAIL" else BAD_RECIPIENT
    for prefix, ours, keep_rest in _AIOSMTPD_PREFIX:
        if reply.startswith(prefix):
            return ours + reply[len(prefix) :] if keep_rest else ours
    return reply
