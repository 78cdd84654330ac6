"""What tracking does to one message at accept time (pure): the rewritten HTML, the link
list to store, and the List-Unsubscribe and CFBL headers to put on top.

Granularity: tokens name one recipient's copy (its delivery id) when the message has
exactly one recipient, which is how bulk mail is sent (one message per recipient, e.g.
through the batch endpoint). A message to several recipients is one MIME document signed
once and sent in one SMTP transaction per destination, so its tokens name the message
(delivery id ``NO_DELIVERY``): its opens and clicks are counted for the message, without a
recipient, and it carries no unsubscribe link, because one link cannot say who asked.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from postyard.core.db import TenantId
from postyard.tracking import feedback, tokens, unsubscribe
from postyard.tracking.rewrite import rewrite_html
from postyard.tracking.types import TrackingConfig

NO_DELIVERY = uuid.UUID(int=0)
"""The delivery id in the tokens of a message with several recipients."""
OPEN_PATH = "/t/o/"
CLICK_PATH = "/t/c/"
UNSUBSCRIBE_PATH = "/u/"
_FOLD_AT = 78


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackingInput:
    tenant_id: TenantId
    message_id: uuid.UUID
    delivery_id: uuid.UUID | None
    """The one recipient's delivery id; None when the message has several recipients."""
    recipient: str | None
    html: str | None
    open_tracking: bool
    click_tracking: bool
    unsubscribe: bool
    """Add List-Unsubscribe (and, with an https base URL, one-click)."""
    bulk: bool
    """Add the CFBL headers (when the return-path domain is known)."""
    return_path_domain: str | None
    """The verified From domain's return-path domain (mailto unsubscribe, CFBL); None for
    an unverified domain."""
    issued_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackingPlan:
    html: str | None
    """The HTML with tracked links and the pixel; None when the HTML is unchanged."""
    links: tuple[str, ...]
    headers: tuple[tuple[str, str], ...]
    open_tracking: bool
    click_tracking: bool
    unsubscribe: bool

    @property
    def recorded(self) -> bool:
        """Whether anything was tracked that the tracked_messages row must remember."""
        return self.open_tracking or self.click_tracking or self.unsubscribe


UNTRACKED = TrackingPlan(
    html=None, links=(), headers=(), open_tracking=False, click_tracking=False, unsubscribe=False
)


def _unsubscribe_headers(config: TrackingConfig, item: TrackingInput) -> list[tuple[str, str]]:
    if item.delivery_id is None or item.recipient is None:
        return []
    https_url = None
    if config.one_click_possible:
        claim = tokens.UnsubscribeClaim(
            tenant_id=item.tenant_id,
            message_id=item.message_id,
            address=item.recipient,
            topic_id=None,
            issued_at=item.issued_at,
        )
        try:
            token = tokens.make_unsubscribe_token(config.key, claim)
        except ValueError:
            return []  # an address over the token's limit: no link rather than no mail
        https_url = f"{config.base_url}{UNSUBSCRIBE_PATH}{token}"
    mailto = None
    if item.return_path_domain is not None:
        mailto_claim = tokens.MailtoUnsubscribeClaim(
            delivery_id=item.delivery_id, issued_at=item.issued_at
        )
        mailto_token = tokens.make_mailto_unsubscribe_token(config.key, mailto_claim)
        mailto = unsubscribe.mailto_address(mailto_token, item.return_path_domain)
    if https_url is None:
        if mailto is None:
            return []
        return [(unsubscribe.LIST_UNSUBSCRIBE, f"<mailto:{mailto}?subject=unsubscribe>")]
    return unsubscribe.list_unsubscribe_headers(https_url=https_url, mailto=mailto, one_click=True)


def plan_tracking(config: TrackingConfig, item: TrackingInput) -> TrackingPlan:
    """What to change in the message. Opens and clicks need HTML (plain text is never
    rewritten, see ``rewrite``); unsubscribe headers need one recipient and an https base
    URL or a return-path domain. Never raises for the message's content."""
    delivery = item.delivery_id or NO_DELIVERY
    open_on = item.open_tracking and item.html is not None
    click_on = item.click_tracking and item.html is not None
    html: str | None = None
    links: tuple[str, ...] = ()
    if open_on or click_on:
        assert item.html is not None

        def click_url(index: int) -> str:
            claim = tokens.ClickClaim(
                tenant_id=item.tenant_id,
                message_id=item.message_id,
                delivery_id=delivery,
                link_index=index,
            )
            return f"{config.base_url}{CLICK_PATH}{tokens.make_click_token(config.key, claim)}"

        pixel = None
        if open_on:
            claim = tokens.OpenClaim(
                tenant_id=item.tenant_id, message_id=item.message_id, delivery_id=delivery
            )
            pixel = f"{config.base_url}{OPEN_PATH}{tokens.make_open_token(config.key, claim)}"
        result = rewrite_html(
            item.html, click_url=click_url if click_on else None, open_pixel_url=pixel
        )
        html, links = result.html, result.links
    headers = _unsubscribe_headers(config, item) if item.unsubscribe else []
    if item.bulk and item.return_path_domain is not None:
        headers += feedback.cfbl_headers(
            config.key,
            return_path_domain=item.return_path_domain,
            tenant_id=item.tenant_id,
            message_id=item.message_id,
        )
    return TrackingPlan(
        html=html,
        links=links,
        headers=tuple(headers),
        open_tracking=open_on,
        click_tracking=click_on,
        unsubscribe=any(name == unsubscribe.LIST_UNSUBSCRIBE for name, _ in headers),
    )


def _field(name: str, value: str) -> str:
    line = f"{name}: {value}"
    if len(line) <= _FOLD_AT or ", " not in value:
        return line
    # Fold after each comma of a URI list (RFC 2369 allows whitespace there).
    return f"{name}: " + ",\r\n ".join(value.split(", "))


def prepend_headers(raw: bytes, headers: tuple[tuple[str, str], ...]) -> bytes:
    """``raw`` with ``headers`` on top (ASCII values made here, never from the caller)."""
    if not headers:
        return raw
    block = "".join(f"{_field(name, value)}\r\n" for name, value in headers)
    return block.encode("ascii") + raw
