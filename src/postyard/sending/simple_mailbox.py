"""The common shapes of mailbox that the general parser (``addresses``) need not work on:
answers here are exactly its answers, for a fraction of the work (tests compare both)."""

from __future__ import annotations

import re

# A conservative subset of addr-specs that email-validator accepts unchanged (apart from a
# lowercased domain): ASCII dot-atom local part, LDH labels without "--" (so no Punycode),
# an alphabetic top-level domain, no special-use name. Anything else takes the full check.
_SIMPLE_LOCAL = re.compile(r"[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*")
_SIMPLE_DOMAIN = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")
_SPECIAL_USE = ("arpa", "invalid", "local", "localhost", "onion")
# The mailboxes nearly every request carries: ``addr``, ``<addr>`` or ``Name <addr>``, the
# name printable ASCII words (without the characters the general parser quotes, refuses or
# splits at: '"', ',', ';', '<', '>', '\\') separated by single spaces, the addr-spec plain
# ASCII, nothing around them. For those the general parser's steps (control characters,
# separators, quoting, whitespace folding) cannot change anything.
_NAME_WORD = r"[!#-+\--:=?-\[\]-~]+"
_SIMPLE_MAILBOX = re.compile(
    rf"(?:(?P<name>{_NAME_WORD}(?: {_NAME_WORD})*) )?"
    r"(?P<open><)?(?P<spec>[A-Za-z0-9_%+.-]+@[A-Za-z0-9.-]+)(?(open)>)"
)


def simple_addr_spec(addr_spec: str) -> tuple[str, str] | None:
    """(local part, lowercased domain) when ``addr_spec`` is in the simple subset that
    email-validator would accept with exactly that result, else None (then it decides).
    email-validator spends most of a batch send's address work on checks (IDNA, Unicode
    categories per character) that a plain ASCII address cannot fail."""
    if not addr_spec.isascii() or len(addr_spec) > 254:
        return None
    local, _, domain = addr_spec.rpartition("@")
    domain = domain.lower()
    if len(local) > 64 or len(domain) > 253 or "--" in domain:
        return None
    if not _SIMPLE_LOCAL.fullmatch(local) or not _SIMPLE_DOMAIN.fullmatch(domain):
        return None
    if any(domain == name or domain.endswith("." + name) for name in _SPECIAL_USE):
        return None
    return local, domain


def simple_mailbox(value: str) -> tuple[str, str, str] | None:
    """(display name, local part, lowercased domain) of ``addr``, ``<addr>`` or
    ``Name <addr>`` in the forms of ``_SIMPLE_MAILBOX``, or None to let the general parser
    decide. A name with "=?" is left to it, since it looks inside encoded words; so is an
    addr-spec outside ``simple_addr_spec``'s subset."""
    if "=?" in value:
        return None
    match = _SIMPLE_MAILBOX.fullmatch(value)
    if match is None:
        return None
    name, open_bracket, addr_spec = match.group("name", "open", "spec")
    if name is not None and open_bracket is None:
        return None  # "Name addr" without brackets: the general parser refuses it
    checked = simple_addr_spec(addr_spec)
    if checked is None:
        return None
    return name or "", checked[0], checked[1]
