"""A request's tracking choices reach the composed message as given (the request without any
shares the default value)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from postyard.core.errors import ValidationFailed
from postyard.core.ids import uuid7
from postyard.sending.compose import NO_OPTIONS, TrackingOptions, compose_message
from postyard.sending.schemas import SendEmailRequest

CHOICES = list(itertools.product([None, True, False], repeat=3))


@pytest.mark.parametrize(("opens", "clicks", "unsubscribe"), CHOICES)
def test_tracking_choices_are_kept(
    opens: bool | None, clicks: bool | None, unsubscribe: bool | None
) -> None:
    request = SendEmailRequest.model_validate(
        {
            "from": "a@example.com",
            "to": "b@example.com",
            "subject": "Hi",
            "text": "Hi",
            "open_tracking": opens,
            "click_tracking": clicks,
            "list_unsubscribe": unsubscribe,
        }
    )
    composed = compose_message(request, message_id=uuid7(), now=datetime.now(UTC))
    assert composed.tracking == TrackingOptions(opens, clicks, unsubscribe)
    assert (composed.tracking is NO_OPTIONS) == (CHOICES.index((opens, clicks, unsubscribe)) == 0)


@pytest.mark.parametrize("field", ["html", "text"])
def test_a_body_with_an_unpaired_surrogate_is_refused_naming_its_field(field: str) -> None:
    # The API's JSON parser refuses "\ud800" already; compose must not rely on that: the
    # stored body could not be written (a 500 before this check).
    request = SendEmailRequest.model_validate(
        {"from": "a@example.com", "to": "b@example.com", "subject": "Hi", "text": "Hi"}
    )
    request = request.model_copy(update={field: "bad \ud800 body"})
    with pytest.raises(ValidationFailed, match=f"`{field}` field must not contain unpaired"):
        compose_message(request, message_id=uuid7(), now=datetime.now(UTC))
