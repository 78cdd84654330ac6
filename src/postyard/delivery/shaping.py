"""Per-destination shaping: how fast and over how many connections mail goes to each site,
slowed down automatically when the site says "not so fast" and recovering gradually.

Each site has a policy (``SitePolicy``: connections, messages per connection, messages per
minute); the rate actually used starts at the policy's and is adapted in the spirit of
KumoMTA's traffic-shaping automation: a throttling reply (421, or a 4yz that says rate,
"try again later", too many …) halves the site's rate and suspends it for a back-off that
doubles with each throttle in a row; every ``recovery_interval`` without a throttle gives back
a tenth of the policy's rate until it is whole again. Mail the site may not take now waits
``deferred`` with a ``shaping:`` reason, without counting an attempt.

``SiteShaper`` holds the state of one worker process; ``delivery.shaping_state`` shares it
through the ``destination_states`` table, so every worker slows down when one is throttled and
the API and CLI can show it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from postyard.delivery.outcome import OutcomeKind, RecipientOutcome
from postyard.delivery.sites import DEFAULT_SITE, KNOWN_SITES


@dataclass(frozen=True, slots=True)
class SitePolicy:
    max_connections: int
    messages_per_connection: int
    messages_per_minute: int


# Starting points for a sender without an established reputation; see docs/architecture.md
# ("Per-destination shaping") for the providers' guidance they follow.
DEFAULT_POLICIES: Mapping[str, SitePolicy] = {
    "google": SitePolicy(max_connections=10, messages_per_connection=100, messages_per_minute=600),
    "microsoft": SitePolicy(max_connections=5, messages_per_connection=50, messages_per_minute=300),
    "yahoo": SitePolicy(max_connections=5, messages_per_connection=20, messages_per_minute=200),
    "apple": SitePolicy(max_connections=5, messages_per_connection=50, messages_per_minute=200),
    DEFAULT_SITE: SitePolicy(
        max_connections=5, messages_per_connection=100, messages_per_minute=300
    ),
}

_THROTTLE_TEXT = re.compile(
    r"try (again )?later|rate|too many|throttl|temporar(il)?y (deferred|rejected|blocked)"
    r"|excessive|slow down|resources|TS0\d|RP-00\d|4\.7\.(0|28|650|500)\b",
    re.IGNORECASE,
)


def is_throttle(outcome: RecipientOutcome) -> bool:
    """Whether a deferral is the site pushing back on us (pure): 421 always; other 4yz when
    the text or enhanced code speaks of rate or load. Mailbox-level 4yz (full, greylisted
    once) are not throttles."""
    reply = outcome.reply
    if outcome.kind is not OutcomeKind.DEFERRED or reply is None:
        return False
    if reply.code == 421:
        return True
    text = f"{reply.enhanced or ''} {reply.text}"
    return 400 <= reply.code < 500 and bool(_THROTTLE_TEXT.search(text))


@dataclass(frozen=True, slots=True)
class Adaptive:
    """Tuning of the automation (settings: ``POSTYARD_SHAPING__*``)."""

    backoff: timedelta = timedelta(minutes=1)
    max_backoff: timedelta = timedelta(minutes=30)
    recovery_interval: timedelta = timedelta(minutes=5)
    min_rate: float = 1.0


@dataclass(frozen=True, slots=True)
class SiteState:
    """A site's adaptive state (a value: ``throttled`` and ``recovered`` return new ones)."""

    site: str
    rate: float
    """Messages per minute allowed now."""
    suspended_until: datetime | None = None
    throttles_in_a_row: int = 0
    last_change: datetime | None = None
    last_throttle: str | None = None

    def throttled(
        self, policy: SitePolicy, tuning: Adaptive, reply: str, now: datetime
    ) -> SiteState:
        backoff = min(tuning.backoff * (2**self.throttles_in_a_row), tuning.max_backoff)
        return replace(
            self,
            rate=max(tuning.min_rate, min(self.rate, policy.messages_per_minute) / 2),
            suspended_until=now + backoff,
            throttles_in_a_row=self.throttles_in_a_row + 1,
            last_change=now,
            last_throttle=reply,
        )

    def recovered(self, policy: SitePolicy, tuning: Adaptive, now: datetime) -> SiteState:
        """One recovery step per ``recovery_interval`` since the last change (pure)."""
        full = float(policy.messages_per_minute)
        if self.rate >= full or (
            self.last_change is not None and now - self.last_change < tuning.recovery_interval
        ):
            return self
        return replace(
            self, rate=min(full, self.rate + full / 10), throttles_in_a_row=0, last_change=now
        )


@dataclass(frozen=True, slots=True)
class Admission:
    """Whether a group may go now; if not, until when it waits and why."""

    until: datetime | None = None
    reason: str = ""
    pause: float = 0.0
    """Seconds to wait before sending (the group's place in the site's pace)."""


@dataclass(slots=True)
class _Site:
    state: SiteState
    policy: SitePolicy
    connections: asyncio.Semaphore
    next_free: datetime | None = None
    changed: bool = False
    pending: list[str] = field(default_factory=list)


class SiteShaper:
    """Admission, connection slots and adaptation per site for one worker process."""

    def __init__(
        self,
        policies: Mapping[str, SitePolicy] = DEFAULT_POLICIES,
        tuning: Adaptive | None = None,
        *,
        max_wait: timedelta = timedelta(seconds=5),
    ) -> None:
        self._policies = {**DEFAULT_POLICIES, **policies}
        self._tuning = tuning or Adaptive()
        self._max_wait = max_wait
        self._sites: dict[str, _Site] = {}

    def policy(self, site: str) -> SitePolicy:
        return self._policies.get(site) or self._policies[DEFAULT_SITE]

    def policy_name(self, site: str) -> str:
        return site if site in self._policies else DEFAULT_SITE

    def _site(self, site: str) -> _Site:
        known = self._sites.get(site)
        if known is None:
            policy = self.policy(site)
            known = _Site(
                SiteState(site, float(policy.messages_per_minute)),
                policy,
                asyncio.Semaphore(policy.max_connections),
            )
            self._sites[site] = known
        return known

    def admit(self, site: str, messages: int, now: datetime) -> Admission:
        """Reserve ``messages`` at the site's current rate. Returns an Admission with
        ``until`` set when the site is suspended or its pace would make the group wait more
        than ``max_wait`` (the caller postpones the rows); otherwise the group may go at once
        or after a short pause (``pause``)."""
        s = self._site(site)
        recovered = s.state.recovered(s.policy, self._tuning, now)
        if recovered is not s.state:
            s.state, s.changed = recovered, True
        if s.state.suspended_until is not None and now < s.state.suspended_until:
            why = f"shaping: {site} is slowed down after '{s.state.last_throttle}'"
            return Admission(s.state.suspended_until, why)
        start = max(now, s.next_free or now)
        if start - now > self._max_wait:
            return Admission(start, f"shaping: {site} paced at {s.state.rate:.0f}/min")
        s.next_free = start + timedelta(minutes=messages / s.state.rate)
        return Admission(pause=(start - now).total_seconds())

    def connection(self, site: str) -> asyncio.Semaphore:
        """Held around each SMTP transaction to the site: at most ``max_connections``."""
        return self._site(site).connections

    def messages_per_connection(self, site: str) -> int:
        return self._site(site).policy.messages_per_connection

    def observe(
        self,
        site: str,
        outcomes: Iterable[RecipientOutcome],
        now: datetime,
        *,
        blocked: str | None = None,
    ) -> None:
        """Adapt to the replies of one transaction: a throttle, or a bounce classified as a
        block (``blocked``: the receiver's policy or our reputation, 5.7.x), slows the site
        down."""
        s = self._site(site)
        throttle = next((str(o.reply) for o in outcomes if is_throttle(o)), None) or blocked
        if throttle is not None:
            s.state = s.state.throttled(s.policy, self._tuning, throttle, now)
            s.next_free = None
            s.changed = True

    def state(self, site: str) -> SiteState:
        return self._site(site).state

    def merge(self, shared: Iterable[SiteState], now: datetime) -> None:
        """Adopt other workers' throttles (the slower rate and later suspension win)."""
        for other in shared:
            s = self._site(other.site)
            mine = s.state
            later = max(
                (t for t in (mine.suspended_until, other.suspended_until) if t is not None),
                default=None,
            )
            if other.rate < mine.rate or later != mine.suspended_until:
                s.state = replace(
                    mine if other.rate >= mine.rate else other,
                    suspended_until=later,
                    throttles_in_a_row=max(mine.throttles_in_a_row, other.throttles_in_a_row),
                )

    def changed(self) -> list[SiteState]:
        """States changed by throttles or recovery since the last call (to publish)."""
        out = [s.state for s in self._sites.values() if s.changed]
        for s in self._sites.values():
            s.changed = False
        return out

    def all_states(self) -> list[SiteState]:
        return [s.state for s in self._sites.values()]


__all__ = ["DEFAULT_POLICIES", "KNOWN_SITES", "SitePolicy", "SiteShaper", "SiteState"]
