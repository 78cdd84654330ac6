"""Posts signed webhooks to users' endpoints without letting a URL reach inside our network.

Each attempt resolves the host once (A and AAAA, with the injected resolver), is refused when
the ``AddressPolicy`` refuses any of the addresses (a public and a private answer is an attack,
DNS rebinding too), and connects to a checked address itself: nobody resolves the name again.
For https, SNI and the certificate check use the URL's host name. Outcomes are values.

A small HTTP/1.1 client on asyncio protocols with ``httptools`` (llhttp, a runtime dependency
already) rather than httpx (a dev dependency): pinning the connection to the checked address is
one connect call here; redirects, environment proxies, cookies, decompression and HTTP/2 are
features a webhook sender must not have; and httpx's layers would eat much of a budget of 3,000
deliveries/s on two cores. Connections are kept alive per (address, port, host, tls).
"""

from __future__ import annotations

import asyncio
import codecs
import functools
import re
import ssl
import weakref
from asyncio import Semaphore
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import ip_address
from os import strerror
from typing import cast

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver
import httptools

from postyard.webhooks.ssrf import AddressPolicy, InvalidWebhookUrl, IPAddress, ParsedUrl
from postyard.webhooks.ssrf import parse_webhook_url as parse_url

BODY_CAP = 64 * 1024
EXCERPT_BYTES = 1024
_PARSED_CAP = 4096
# Headers the sender owns: framing and connection management (RFC 9112 §6, RFC 9110 §7.6.1).
_OWN_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "te"}
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds allowed per phase of one attempt."""

    connect: float = 5.0  # TCP connect and TLS handshake, per address tried
    read: float = 15.0  # from the request written to the response read (Svix allows 15 s)
    total: float = 30.0  # the whole attempt: DNS, connect, request and response


@dataclass(frozen=True, slots=True)
class SendResult:
    """One delivery attempt. ``error`` is None exactly when the endpoint answered 2xx.

    ``status``: the HTTP status if one arrived (a 3xx is never followed); ``excerpt``: the
    first KiB of the body, decoded, NULs replaced; ``refused``: refused before any connection.
    """

    status: int | None
    excerpt: str
    duration_ms: float
    error: str | None
    refused: bool = False
    retry_after: str = ""
    """The response's Retry-After field as sent ("" without one); ``retry`` reads it."""


class WebhookSender:
    """Delivers webhooks; create one per process and ``aclose`` it at shutdown.

    At most ``max_connections_per_host`` attempts (so connections) run at once per endpoint
    (scheme, host, port); others wait, outside the timeouts and the duration. Idle connections
    close after ``keepalive_expiry`` s, under common server idle timeouts (uvicorn: 5 s).
    """

    def __init__(
        self,
        *,
        resolver: dns.asyncresolver.Resolver,
        policy: AddressPolicy,
        ssl_context: ssl.SSLContext | None = None,
        timeouts: Timeouts = Timeouts(),
        max_connections_per_host: int = 16,
        keepalive_expiry: float = 4.0,
        body_cap: int = BODY_CAP,
    ) -> None:
        self._resolver, self._policy = resolver, policy
        self._ssl = ssl_context or ssl.create_default_context()
        self._timeouts = timeouts
        self._per_host = max_connections_per_host
        self._keepalive, self._body_cap = keepalive_expiry, body_cap
        # Weak: an endpoint's semaphore lives while an attempt holds or awaits it.
        self._slots = weakref.WeakValueDictionary[tuple[str, str, int], Semaphore]()
        self._idle: dict[_Key, list[_Connection]] = {}
        self._sweep_timer: asyncio.TimerHandle | None = None
        self._parsed: dict[str, ParsedUrl | str] = {}
        self._closed = False

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> SendResult:
        """POST ``body`` with ``headers`` (Host and Content-Length are added) to ``url``.

        Raises RuntimeError after ``aclose``, and ValueError for a header the sender sets
        itself (Host, Content-Length, Connection, ...) or one that HTTP/1.1 cannot carry.
        """
        if self._closed:
            raise RuntimeError("the webhook sender is closed")
        parsed = self._parse(url)
        if isinstance(parsed, str):
            return SendResult(None, "", 0.0, parsed, refused=True)
        request = _request_head(parsed, len(body), headers) + body
        loop = asyncio.get_running_loop()
        key = (parsed.scheme, parsed.host, parsed.port)
        semaphore = self._slots.get(key) or self._slots.setdefault(key, Semaphore(self._per_host))
        async with semaphore:
            started = loop.time()
            try:
                async with asyncio.timeout(self._timeouts.total):
                    outcome = await self._attempt(parsed, request)
            except TimeoutError:
                why = f"no answer within the {self._timeouts.total:g} s total timeout"
                outcome = None, "", why, False, ""
            status, excerpt, error, refused, retry_after = outcome
            duration_ms = (loop.time() - started) * 1000
            return SendResult(status, excerpt, duration_ms, error, refused, retry_after)

    def _parse(self, url: str) -> ParsedUrl | str:
        """``parse_url``'s verdict (the parsed URL or why it is refused), memoised: it depends
        only on the URL and the policy, and a dispatcher sends to few URLs many times."""
        verdict = self._parsed.get(url)
        if verdict is None:
            try:
                verdict = parse_url(url, self._policy)
            except InvalidWebhookUrl as exc:
                verdict = str(exc)
            if len(self._parsed) >= _PARSED_CAP:
                self._parsed.clear()
            self._parsed[url] = verdict
        return verdict

    async def aclose(self) -> None:
        """Close the idle connections; attempts in flight close theirs when they end."""
        self._closed = True
        if self._sweep_timer is not None:
            self._sweep_timer.cancel()
            self._sweep_timer = None
        for connection in [each for idle in self._idle.values() for each in idle]:
            connection.close()
        self._idle.clear()

    async def _attempt(self, url: ParsedUrl, request: bytes) -> _Outcome:
        addresses = [url.ip] if url.ip is not None else await self._resolve(url.host)
        if isinstance(addresses, str):
            return None, "", addresses, False, ""
        reason = self._policy.check_destination(url, addresses)
        if reason is not None:
            return None, "", reason, True, ""
        connection = self._take_idle(url, addresses)
        if connection is not None:
            outcome = await self._exchange(connection, request, True)
            if outcome is not None:
                return outcome
        connected = await self._connect(url, addresses)
        if isinstance(connected, str):
            return None, "", connected, False, ""
        outcome = await self._exchange(connected, request, False)
        assert outcome is not None  # only a reused connection can turn out stale
        return outcome

    async def _resolve(self, host: str) -> list[IPAddress] | str:
        # An absolute name and no search list: "hooks" must not become "hooks.corp.example".
        name = dns.name.from_text(host)
        answers = await asyncio.gather(
            *(self._resolver.resolve(name, rdtype, search=False) for rdtype in ("A", "AAAA")),
            return_exceptions=True,
        )
        addresses: list[IPAddress] = []
        errors = []
        for answer in answers:
            if isinstance(answer, dns.resolver.Answer):
                addresses.extend(ip_address(rdata.to_text()) for rdata in answer)
            elif not isinstance(answer, dns.resolver.NoAnswer):
                errors.append(answer)
        if addresses or not errors:
            return addresses or f"{host} has no A or AAAA records"
        if all(isinstance(error, dns.resolver.NXDOMAIN) for error in errors):
            return f"{host} does not exist (NXDOMAIN)"
        return f"DNS lookup of {host} failed: {errors[0]}"

    async def _connect(self, url: ParsedUrl, addresses: Sequence[IPAddress]) -> _Connection | str:
        loop = asyncio.get_running_loop()
        context, sni = (self._ssl, url.host) if url.tls else (None, None)
        name = "" if url.ip is not None else url.host  # labels read "hooks.example[192.0.2.1]:443"
        failures = []
        for ip in addresses:
            label = f"{name}[{ip}]:{url.port}" if name or ip.version == 6 else f"{ip}:{url.port}"
            key = (ip, url.port, url.host, url.tls)
            factory = functools.partial(_Connection, key, label, self._body_cap)
            try:
                async with asyncio.timeout(self._timeouts.connect):
                    _, connection = await loop.create_connection(
                        factory, str(ip), url.port, ssl=context, server_hostname=sni
                    )
            except ssl.SSLCertVerificationError as exc:
                failures.append(f"{label}: TLS certificate rejected: {exc.verify_message}")
            except ssl.SSLError as exc:
                failures.append(f"{label}: TLS handshake failed: {exc.reason or exc}")
            except TimeoutError:
                failures.append(f"{label}: connect timeout")
            except OSError as exc:  # asyncio's own text repeats the address
                failures.append(f"{label}: {strerror(exc.errno) if exc.errno else repr(exc)}")
            else:
                return connection
        return "; ".join(failures)

    async def _exchange(
        self, connection: _Connection, request: bytes, reused: bool
    ) -> _Outcome | None:
        """Send and read one response; None when a reused connection turns out closed."""
        keep = False
        try:
            await connection.exchange(request, self._timeouts.read)
            if reused and connection.received == 0 and not connection.timed_out:
                # The server closed it while idle; a fresh connection is the standard retry
                # (RFC 9112 §9.3.1), and receivers deduplicate on webhook-id anyway.
                return None
            keep = connection.reusable() and not self._closed
            return _outcome(connection)
        finally:
            if keep:
                self._keep(connection)
            else:
                connection.close(abort=True)

    def _take_idle(self, url: ParsedUrl, addresses: Sequence[IPAddress]) -> _Connection | None:
        oldest = asyncio.get_running_loop().time() - self._keepalive
        for ip in addresses:
            key = (ip, url.port, url.host, url.tls)
            idle = self._idle.get(key)
            while idle:
                connection = idle.pop()
                if not idle:
                    del self._idle[key]
                if not connection.usable():
                    connection.close(abort=True)
                elif connection.idle_since <= oldest:
                    connection.close()  # past keepalive_expiry; the sweep has not run yet
                else:
                    return connection
        return None

    def _keep(self, connection: _Connection) -> None:
        idle = self._idle.setdefault(connection.key, [])
        if len(idle) >= self._per_host:
            connection.close()
            return
        loop = asyncio.get_running_loop()
        connection.idle_since = loop.time()
        idle.append(connection)
        # One timer for all idle connections rather than one per request: taking a connection
        # checks its age, and the sweep closes those nobody took in time.
        if self._sweep_timer is None:
            self._sweep_timer = loop.call_later(self._keepalive, self._sweep)

    def _sweep(self) -> None:
        self._sweep_timer = None
        loop = asyncio.get_running_loop()
        oldest = loop.time() - self._keepalive
        for key, idle in list(self._idle.items()):
            expired = [c for c in idle if c.idle_since <= oldest]
            for connection in expired:
                connection.close()
            if len(expired) == len(idle):
                del self._idle[key]
            else:
                idle[:] = [c for c in idle if c.idle_since > oldest]
        if self._idle:
            first = min(c.idle_since for idle in self._idle.values() for c in idle)
            self._sweep_timer = loop.call_at(first + self._keepalive, self._sweep)


_Key = tuple[IPAddress, int, str, bool]  # address, port, host name, tls
_Outcome = tuple[int | None, str, str | None, bool, str]
"""status, excerpt, error, refused, Retry-After."""


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection and the response read on it (one at a time; ``on_*`` are the
    parser's callbacks). Bytes arriving while no request waits (a 408 before an idle close)
    make it unusable: they must never pass for the answer to the next request."""

    def __init__(self, key: _Key, label: str, cap: int) -> None:
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


def _outcome(response: _Connection) -> _Outcome:
    status, label = response.status, response.label
    excerpt = _excerpt(bytes(response.body))
    if response.timed_out:
        waiting = "an answer" if status is None else "the rest of the answer"
        return status, excerpt, f"timed out waiting for {waiting} from {label}", False, ""
    if status is None:
        return None, excerpt, f"no answer from {label}: {response.error or 'closed'}", False, ""
    if response.error is not None and not response.complete:
        return status, excerpt, f"incomplete answer from {label}: {response.error}", False, ""
    if 200 <= status < 300:
        return status, excerpt, None, False, ""
    if 300 <= status < 400:
        error = f"redirect ({status} to {response.location!r}) not followed"
        return status, excerpt, error, False, response.retry_after
    return status, excerpt, f"HTTP {status}", False, response.retry_after


def _excerpt(body: bytes) -> str:
    head = body[:EXCERPT_BYTES]
    if head.isascii():  # the usual case ("ok", JSON): nothing to cut or replace but NUL
        return head.decode("ascii").replace("\0", "\ufffd")
    # final=False drops a character cut in two at the boundary; PostgreSQL text holds no NUL.
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    return decoder.decode(head, final=False).replace("\0", "\ufffd")


def _request_head(url: ParsedUrl, length: int, headers: Mapping[str, str]) -> bytes:
    for name in headers:
        problem = _header_name_problem(name)
        if problem is not None:
            raise ValueError(problem)
    if _BAD_VALUE.search("".join(headers.values())):  # one scan for all values
        bad = next(name for name, value in headers.items() if _BAD_VALUE.search(value))
        raise ValueError(f"header {bad!r} cannot be sent")
    lines = "".join([f"{name}: {value}\r\n" for name, value in headers.items()])
    head = f"POST {url.target} HTTP/1.1\r\nhost: {url.host_header}\r\ncontent-length: {length}\r\n"
    return (head + lines + "\r\n").encode("ascii")  # UnicodeEncodeError is a ValueError


@functools.lru_cache(maxsize=256)
def _header_name_problem(name: str) -> str | None:
    # Memoised: a sender sends the same few header names on every request.
    if name.lower() in _OWN_HEADERS:
        return f"the sender sets the {name} header itself"
    if not _TOKEN.fullmatch(name):
        return f"header {name!r} cannot be sent"
    return None
