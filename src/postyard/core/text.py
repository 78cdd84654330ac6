"""Text that can leave the process: encodable as UTF-8, and storable in PostgreSQL."""

from __future__ import annotations


def well_formed(text: str) -> str:
    """``text`` with unpaired surrogates (not encodable as UTF-8) replaced by U+FFFD."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def storable(text: str) -> str:
    """``text`` as PostgreSQL can keep it (pure): text holds no NUL and, sent as UTF-8, no
    unpaired surrogate. SMTP replies are decoded with ``surrogateescape`` (a server may
    answer in Latin-1): their undecodable bytes, any other unpaired surrogate and NUL each
    become U+FFFD rather than failing the statement that records them. Returns ``text``
    itself when it needs nothing."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    if text.isascii() or well_formed(text) is text:
        return text
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # surrogates that are not escaped bytes
        return well_formed(text)
