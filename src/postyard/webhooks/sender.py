"""Posts signed webhooks to users' endpoints without letting a URL reach inside our network.

Each attempt resolves the host once (A and AAAA, with the injected resolver), is refused when
the ``AddressPolicy`` refuses any of the addresses (a public and a private answer is an attack,
DNS rebinding too), and connects to a checked address itself: nobody resolves the name again.
For https, SNI and the certificate check use the URL's host name. Outcomes are values.

A small HTTP/1.1 client on asyncio protocols with ``httptools`` (llhttp, a runtime dependency
already) rather than httpx (a dev dependency): pinning the connection to the checked address is
one connect call here; redirects, environment proxies, cookies, decompression and HTTP/2 are
features a webhook sender must not have; and httpx's layers would eat much of a budget of 3,000
deliveries/s on two cores. Connections (`connection.py`) are kept alive per (address, port,
host, tls).
"""

from __future__ import annotations

import asyncio
import functools
import re
import ssl
import weakref
from asyncio import Semaphore
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import ip_address
from os import strerror

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver

from postyard.webhooks.connection import Connection, Key, Outcome, outcome
from postyard.webhooks.ssrf import AddressPolicy, InvalidWebhookUrl, IPAddress, ParsedUrl
from postyard.webhooks.ssrf import parse_webhook_url as parse_url

BODY_CAP = 64 * 1024
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
        self._idle: dict[Key, list[Connection]] = {}
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

    async def _attempt(self, url: ParsedUrl, request: bytes) -> Outcome:
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

    async def _connect(self, url: ParsedUrl, addresses: Sequence[IPAddress]) -> Connection | str:
        loop = asyncio.get_running_loop()
        context, sni = (self._ssl, url.host) if url.tls else (None, None)
        name = "" if url.ip is not None else url.host  # labels read "hooks.example[192.0.2.1]:443"
        failures = []
        for ip in addresses:
            label = f"{name}[{ip}]:{url.port}" if name or ip.version == 6 else f"{ip}:{url.port}"
            key = (ip, url.port, url.host, url.tls)
            factory = functools.partial(Connection, key, label, self._body_cap)
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
        self, connection: Connection, request: bytes, reused: bool
    ) -> Outcome | None:
        """Send and read one response; None when a reused connection turns out closed."""
        keep = False
        try:
            await connection.exchange(request, self._timeouts.read)
            if reused and connection.received == 0 and not connection.timed_out:
                # The server closed it while idle; a fresh connection is the standard retry
                # (RFC 9112 §9.3.1), and receivers deduplicate on webhook-id anyway.
                return None
            keep = connection.reusable() and not self._closed
            return outcome(connection)
        finally:
            if keep:
                self._keep(connection)
            else:
                connection.close(abort=True)

    def _take_idle(self, url: ParsedUrl, addresses: Sequence[IPAddress]) -> Connection | None:
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

    def _keep(self, connection: Connection) -> None:
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
