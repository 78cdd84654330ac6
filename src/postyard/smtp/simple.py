"""Fast paths for the simple forms of what SMTP clients send, read exactly as the stdlib's
header parser reads them (each is checked against it by a differential test in
tests/smtp/test_simple_headers.py); anything else goes to the stdlib. The stdlib parser
(``email._header_value_parser``) was about a third of the relay's CPU per message.
"""

from __future__ import annotations

import re

# Printable ASCII with single spaces and no encoded word: the stdlib returns it unchanged.
PLAIN_SUBJECT = re.compile(r"(?!.*=\?)[!-~]+(?: [!-~]+)*")

# Address lists the stdlib would read as exactly these mailboxes: comma-separated items,
# each an addr-spec, or <addr-spec> after optional atoms (single spaces); printable ASCII,
# nothing the parser treats specially (quotes, comments, groups, encoded words, literals).
_SIMPLE_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_SIMPLE_ADDR = rf"{_SIMPLE_ATOM}(?:\.{_SIMPLE_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
_SIMPLE_ITEM = re.compile(
    rf"[ \t]*(?:({_SIMPLE_ADDR})"
    rf"|(?:({_SIMPLE_ATOM}(?: {_SIMPLE_ATOM})*) ?)?<({_SIMPLE_ADDR})>)[ \t]*"
)


def simple_address_list(value: str) -> list[tuple[str, str]] | None:
    """(display name, addr-spec) of each mailbox of a simple list, or None for anything
    else (then the stdlib parses it). tests/smtp/test_simple_headers.py checks that the
    stdlib reads every list this accepts the same way."""
    if "=?" in value or not value.isascii():
        return None
    found = []
    for item in value.split(","):
        match = _SIMPLE_ITEM.fullmatch(item)
        if match is None:
            return None
        bare, name, spec = match.groups()
        found.append(("", bare) if bare is not None else (name or "", spec))
    return found


_ANGLE_ADDR = re.compile(rf"[ \t]*<({_SIMPLE_ADDR})>(?:[ \t]+([^ \t(].*)?)?")


def simple_angle_addr(arg: str) -> tuple[str, str] | None:
    """(address, rest) of a MAIL FROM / RCPT TO argument ``<addr-spec> [parameters]`` as
    ``email._header_value_parser.get_angle_addr`` gives them, or None for anything else."""
    if not arg.isascii():
        return None
    match = _ANGLE_ADDR.fullmatch(arg)
    if match is None:
        return None
    return match.group(1), match.group(2) or ""
