"""The targets of the issues for this round (2 cores), by figure key: issue 8's, and issue
3's end-to-end rate. A figure without a target is shown with "-". A key ending in ``*``
matches every key with that prefix."""

from __future__ import annotations

from dataclasses import dataclass

from _summary import Figure

RSS_LIMIT_MIB = 250.0


@dataclass(frozen=True, slots=True)
class Target:
    text: str
    at_least: float | None = None
    at_most: float | None = None
    of_reference: bool = False
    """Compare the ratio to the reference rather than the value itself."""
    issue: int = 8

    @property
    def label(self) -> str:
        return f"{self.text} (issue {self.issue})"

    def met(self, figure: Figure) -> bool | None:
        value = figure.ratio if self.of_reference else figure.value
        if value is None:
            return None
        if self.at_least is not None and value < self.at_least:
            return False
        return not (self.at_most is not None and value > self.at_most)

    def gap(self, figure: Figure) -> str:
        """How far a missed target is, as a factor of what is needed."""
        value = figure.ratio if self.of_reference else figure.value
        if value is None or value == 0:
            return ""
        if self.at_least is not None and value < self.at_least:
            return f" ({self.at_least / value:.1f}x short)"
        if self.at_most is not None and value > self.at_most:
            return f" ({value / self.at_most:.1f}x over)"
        return ""


_RSS = Target(f"<= {RSS_LIMIT_MIB:.0f} MiB", at_most=RSS_LIMIT_MIB)
TARGETS: dict[str, Target] = {
    "delivery.api_single": Target(">= 3,000 req/s", at_least=3000.0),
    "delivery.paced_p50": Target("<= 5 ms", at_most=5.0),
    "delivery.api_batch": Target(">= 0.5x COPY", at_least=0.5, of_reference=True),
    "delivery.e2e_single": Target(">= 1.0x Postfix", at_least=1.0, of_reference=True),
    "delivery.e2e_batch": Target(">= 1.0x Postfix", at_least=1.0, of_reference=True),
    "delivery.e2e_batch_unsigned": Target(">= 2,000 msgs/s", at_least=2000.0, issue=3),
    "delivery.rss.*": _RSS,
    "delivery.full.1000000.rss.*": _RSS,
    "smtp_ingest.smtp_accept": Target(">= 1.0x Postfix", at_least=1.0, of_reference=True),
}


def target_of(key: str) -> Target | None:
    if key in TARGETS:
        return TARGETS[key]
    matches = [k for k in TARGETS if k.endswith("*") and key.startswith(k[:-1])]
    return TARGETS[max(matches, key=len)] if matches else None
