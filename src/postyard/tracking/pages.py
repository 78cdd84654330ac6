"""The few pages the tracking host shows people (pure): small, self-contained HTML without
scripts, external resources or cookies."""

from __future__ import annotations

import html

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;
line-height:1.5}}button{{font-size:1rem;padding:.5rem 1rem}}</style>
</head><body><h1>{title}</h1>{body}</body></html>
"""
# The hidden field makes the confirmation form's POST a valid RFC 8058 one-click body too;
# "source" tells the event which door the request came in by.
_FORM = """<p>Do you want to stop receiving these emails at <strong>{address}</strong>?</p>
<form method="post" action="">
<input type="hidden" name="List-Unsubscribe" value="One-Click">
<input type="hidden" name="source" value="page">
<button type="submit">Unsubscribe</button>
</form>
"""


def page(title: str, message: str) -> str:
    """A page with a title and one paragraph (both escaped)."""
    body = f"<p>{html.escape(message)}</p>"
    return _PAGE.format(title=html.escape(title), body=body)


def confirmation_page(address: str) -> str:
    """The page a GET on an unsubscribe link shows: a button that POSTs, nothing more."""
    body = _FORM.format(address=html.escape(address))
    return _PAGE.format(title="Unsubscribe", body=body)


NOT_FOUND = page("Link not found", "This link is not valid. It may have been copied incompletely.")
EXPIRED = page(
    "Link expired",
    "This unsubscribe link has expired. Use the link in a more recent email, or reply to the "
    "sender.",
)
BAD_REQUEST = page("Unsubscribe", "This request could not be understood.")
UNSUBSCRIBED = page(
    "Unsubscribed", "You are unsubscribed. You will not receive these emails again."
)
ALREADY = page("Unsubscribed", "You are already unsubscribed.")
