"""Rows for a statement as one JSON text (``json_to_recordset`` on the server).

For a hot multi-row statement this beats one array parameter per column: asyncpg encodes
a list element by element, with two Python-level type checks each, and grows its send
buffer a kilobyte at a time, copying what it holds; a JSON text is one string for the
driver and one parse for the server.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def json_rows(rows: Sequence[Mapping[str, Any]]) -> str:
    """``rows`` as a JSON array of objects; non-ASCII text stays as it is (the driver sends
    the text as UTF-8 either way, and a lone surrogate fails there, as in any parameter)."""
    return _encode(rows)


def storable(text: str) -> str:
    """``text`` as PostgreSQL can keep it (pure): text holds no NUL and, sent as UTF-8, no
    unpaired surrogate. SMTP replies are decoded with ``surrogateescape`` (a server may
    answer in Latin-1); their undecodable bytes, any other unpaired surrogate and NUL each
    become U+FFFD rather than failing the statement that records them."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    if text.isascii():
        return text
    try:
        text.encode()
    except UnicodeEncodeError:
        try:
            return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        except UnicodeEncodeError:
            return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text
