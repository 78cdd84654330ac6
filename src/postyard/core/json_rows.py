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
