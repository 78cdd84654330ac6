"""The one entry point that reads a report from raw bytes (pure).

``parse_report`` looks for an RFC 5965 feedback report (a complaint), then an RFC 3464
delivery-status report (a bounce or a delay), then for the text of the common non-standard
bounces; whatever it is given, it returns a value and never raises.
"""

from __future__ import annotations

import email.parser
import email.policy

from postyard.inbound import arf, dsn, heuristics
from postyard.inbound.mime import PARSE_ERRORS
from postyard.inbound.types import NotAReport, Report


def parse_report(raw: bytes) -> Report:
    """What ``raw`` (a whole message as received) reports. Never raises."""
    try:
        message = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(raw)
        found: Report | None = arf.parse(message) or dsn.parse(message)
        if found is None:
            found = heuristics.parse(message)
    except PARSE_ERRORS:
        return NotAReport("unparsable")
    return found if found is not None else NotAReport("not_a_report")
