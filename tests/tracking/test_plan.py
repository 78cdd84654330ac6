"""What accept-time tracking changes (pure), and the CFBL feedback ids."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from postyard.core.db import TenantId
from postyard.tracking import feedback, tokens
from postyard.tracking.plan import (
    NO_DELIVERY,
    TrackingInput,
    plan_tracking,
    prepend_headers,
)
from postyard.tracking.types import TrackingConfig

KEY = b"k" * 32
HTTPS = TrackingConfig(key=KEY, base_url="https://t.example")
HTTP = TrackingConfig(key=KEY, base_url="http://127.0.0.1:8000")
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
TENANT = TenantId(uuid.UUID(int=1))
ITEM = TrackingInput(
    tenant_id=TENANT,
    message_id=uuid.UUID(int=2),
    delivery_id=uuid.UUID(int=3),
    recipient="ann@example.org",
    html='<p><a href="https://a.example/x">x</a></p>',
    open_tracking=False,
    click_tracking=False,
    unsubscribe=False,
    bulk=False,
    return_path_domain=None,
    issued_at=NOW,
)


def test_nothing_asked_changes_nothing() -> None:
    plan = plan_tracking(HTTPS, ITEM)
    assert (plan.html, plan.links, plan.headers, plan.recorded) == (None, (), (), False)


def test_text_only_mail_is_never_rewritten() -> None:
    plan = plan_tracking(HTTPS, replace(ITEM, html=None, open_tracking=True, click_tracking=True))
    assert plan.html is None
    assert not plan.open_tracking
    assert not plan.click_tracking


def test_clicks_name_the_recipients_delivery_and_the_links_are_kept() -> None:
    plan = plan_tracking(HTTPS, replace(ITEM, click_tracking=True))
    assert plan.links == ("https://a.example/x",)
    assert plan.html is not None
    token = plan.html.split('href="https://t.example/t/c/', 1)[1].split('"', 1)[0]
    claim = tokens.verify_click_token(KEY, token)
    assert (claim.delivery_id, claim.link_index) == (ITEM.delivery_id, 0)


def test_several_recipients_share_message_tokens_and_get_no_unsubscribe() -> None:
    item = replace(ITEM, delivery_id=None, recipient=None, open_tracking=True, unsubscribe=True)
    plan = plan_tracking(HTTPS, item)
    assert plan.html is not None
    token = plan.html.split("/t/o/", 1)[1].split('"', 1)[0]
    assert tokens.verify_open_token(KEY, token).delivery_id == NO_DELIVERY
    assert plan.headers == ()
    assert not plan.unsubscribe


def test_unsubscribe_headers_depend_on_https_and_the_return_path() -> None:
    def names(config: TrackingConfig, **changes: object) -> list[str]:
        item = replace(ITEM, unsubscribe=True, **changes)  # type: ignore[arg-type] # field values
        return [name for name, _ in plan_tracking(config, item).headers]

    assert names(HTTPS) == ["List-Unsubscribe", "List-Unsubscribe-Post"]
    assert names(HTTP) == []  # one-click needs https, and there is no mailto address
    assert names(HTTP, return_path_domain="send.acme.test") == ["List-Unsubscribe"]
    plan = plan_tracking(HTTP, replace(ITEM, unsubscribe=True, return_path_domain="send.acme.test"))
    assert plan.headers[0][1].startswith("<mailto:u+")
    assert plan.unsubscribe
    assert names(HTTPS, bulk=True, return_path_domain="send.acme.test") == [
        "List-Unsubscribe", "List-Unsubscribe-Post", "CFBL-Address", "CFBL-Feedback-ID",
    ]  # fmt: skip


def test_prepended_headers_fold_at_the_comma() -> None:
    plan = plan_tracking(HTTPS, replace(ITEM, unsubscribe=True, return_path_domain="send.a.test"))
    raw = prepend_headers(b"From: a@a.test\r\n\r\nbody\r\n", plan.headers)
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert head.startswith(b"List-Unsubscribe: <https://t.example/u/")
    assert b",\r\n <mailto:u+" in head
    assert all(len(line) <= 998 for line in head.split(b"\r\n"))
    assert raw.endswith(b"From: a@a.test\r\n\r\nbody\r\n")


def test_feedback_ids_round_trip_and_refuse_forgeries() -> None:
    value = feedback.make_feedback_id(KEY, TENANT, ITEM.message_id)
    ref = feedback.parse_feedback_id(KEY, f"  {value.upper()} ")
    assert ref == feedback.FeedbackRef(TENANT, ITEM.message_id)
    other_tenant = uuid.UUID(int=9).hex + value[32:]
    for forged in (other_tenant, value[:-1] + ("0" if value[-1] != "0" else "1"), "", "x.y.z"):
        assert feedback.parse_feedback_id(KEY, forged) is None
    assert feedback.parse_feedback_id(b"o" * 32, value) is None


@pytest.mark.parametrize("domain", ["send.acme.test", "SEND.Acme.Test"])
def test_cfbl_address_is_on_the_return_path_domain(domain: str) -> None:
    headers = feedback.cfbl_headers(
        KEY, return_path_domain=domain, tenant_id=TENANT, message_id=ITEM.message_id
    )
    assert headers[0] == ("CFBL-Address", "fbl@send.acme.test; report=arf")
