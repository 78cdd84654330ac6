"""One kept-alive HTTP/1.1 connection of the webhook sender and the response read on it:
an asyncio protocol with ``httptools`` (llhttp) as the parser, and the outcome it makes."""

from __future__ import annotations

import asyncio
import codecs
from typing import cast

import httptools

from postyard.webhooks.ssrf import IPAddress

EXCERPT_BYTES = 1024

Key = tuple[IPAddress, int, str, bool]  # address, port, host name, tls
Outcome = tuple[int | None, str, str | None, bool, str]
"""status, excerpt, error, refused, Retry-After (a tuple: cheaper than a dataclass on the
path of every delivery)."""


class Connection(asyncio.Protocol):
    """One HTTP/1.1 connection and the response read on it (one at a time; ``on_*`` are the
    parser's callbacks). Bytes arriving while no request waits (a 408 before an idle close)
    make it unusable: they must never pass for the answer to the next request."""

    def __init__(self, key: Key, label: str, cap: int) -> None:
        self.key, self.label, self.cap = key, label, cap
        self.idle_since = 0.0  # the loop's time when it was last given back
        self.broken = False
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._reset()

    def _reset(self) -> None:
        self.status: int | None = None
        self.location = ""
        self.retry_after = ""
        self.body = bytearray()  # at most ``cap`` bytes kept
        self.body_seen = self.received = 0
        self.complete = self.timed_out = self.keep_alive = False
        self.error: str | None = None
        self._parser = httptools.HttpResponseParser(self)

    async def exchange(self, request: bytes, read_timeout: float) -> None:
        """Send ``request``; return once the response is complete, cut at the cap, ended by
        the peer or malformed, or after ``read_timeout`` seconds (``timed_out``)."""
        assert self._transport is not None
        self._reset()
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        if self.broken:  # closed (or spoke first) before this request: nothing will come
            self._finish("closed before the request")
        # A timer that ends the wait, rather than asyncio.timeout's cancellation: the same
        # outcome for a future only this connection resolves, at a fraction of the cost.
        timer = loop.call_later(read_timeout, self._read_timed_out)
        try:
            # Written whole: webhook bodies are small, and an endpoint that does not read
            # them does not answer either, which the read timeout catches.
            self._transport.write(request)
            await self._waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _read_timed_out(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self.timed_out = True
            self._waiter.set_result(None)

    def reusable(self) -> bool:
        fully_read = self.complete and self.error is None and self.body_seen <= self.cap
        return fully_read and not self.broken and self.keep_alive

    def usable(self) -> bool:
        transport = self._transport
        return not self.broken and transport is not None and not transport.is_closing()

    def close(self, *, abort: bool = False) -> None:
        """Close gracefully (TLS close_notify) or, with ``abort``, at once."""
        if self._transport is not None:
            (self._transport.abort if abort else self._transport.close)()

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (selector, SSL or uvloop), whatever class it declares.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            self.broken = True
            return
        self.received += len(data)
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._finish(f"malformed response: {exc}")
            return
        if self.status is None and self.received > self.cap:
            self._finish("response headers too large")
        elif self.complete or self.body_seen > self.cap:
            self._finish(None)

    # eof_received is the default: the transport closes, and connection_lost follows.
    def connection_lost(self, exc: Exception | None) -> None:
        self.broken = True
        self._finish(None if exc is None else f"connection lost: {exc}")

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        lower = name.lower()
        if lower == b"location":
            self.location = value.decode("latin-1")[:200]
        elif lower == b"retry-after":
            self.retry_after = value.decode("latin-1")[:100]

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self.body += body[: max(self.cap - len(self.body), 0)]
        self.body_seen += len(body)

    def on_message_complete(self) -> None:
        if self.status is not None and 100 <= self.status < 200:
            self.status = None  # RFC 9110 §15.2: interim responses come before the final one
        elif self.complete:
            self.broken = True  # a second response, to no request
        else:
            # Asked now: llhttp forgets the connection flags once the message is done.
            self.complete, self.keep_alive = True, self._parser.should_keep_alive()

    def _finish(self, error: str | None) -> None:
        if self._waiter is not None and not self._waiter.done():
            self.error = error
            self._waiter.set_result(None)


def outcome(response: Connection) -> Outcome:
    status, label = response.status, response.label
    text = excerpt(bytes(response.body))
    if response.timed_out:
        waiting = "an answer" if status is None else "the rest of the answer"
        return status, text, f"timed out waiting for {waiting} from {label}", False, ""
    if status is None:
        return None, text, f"no answer from {label}: {response.error or 'closed'}", False, ""
    if response.error is not None and not response.complete:
        return status, text, f"incomplete answer from {label}: {response.error}", False, ""
    if 200 <= status < 300:
        return status, text, None, False, ""
    if 300 <= status < 400:
        error = f"redirect ({status} to {response.location!r}) not followed"
        return status, text, error, False, response.retry_after
    return status, text, f"HTTP {status}", False, response.retry_after


def excerpt(body: bytes) -> str:
    head = body[:EXCERPT_BYTES]
    if head.isascii():  # the usual case ("ok", JSON): nothing to cut or replace but NUL
        return head.decode("ascii").replace("\0", "\ufffd")
    # final=False drops a character cut in two at the boundary; PostgreSQL text holds no NUL.
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    return decoder.decode(head, final=False).replace("\0", "\ufffd")
