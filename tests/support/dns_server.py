"""A DNS server on loopback (UDP and TCP, one port), in the running event loop, for tests.

It answers from a dict of names to records; names it does not know get NXDOMAIN, names
marked failing get SERVFAIL, known names without records of the asked type get an empty
NOERROR answer (NODATA). Every query is recorded.

    zone = {"example.test": [MX(10, "mx1.test")], "mx1.test": [A("127.0.0.1")]}
    async with DnsServer(zone) as dns_server:
        resolver = make_resolver([dns_server.nameserver])
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, cast

import dnslib


@dataclass(frozen=True, slots=True)
class MX:
    preference: int
    exchange: str
    """A host name, or "." for a null MX (RFC 7505)."""


@dataclass(frozen=True, slots=True)
class A:
    address: str


@dataclass(frozen=True, slots=True)
class AAAA:
    address: str


@dataclass(frozen=True, slots=True)
class TXT:
    text: str
    """One TXT record; split into 255-octet strings on the wire as RFC 7208 §3.3 allows."""


@dataclass(frozen=True, slots=True)
class CNAME:
    target: str


Record = MX | A | AAAA | TXT | CNAME
NULL_MX = MX(0, ".")
_TTL = 60


class DnsServer:
    """Serves ``records`` on ``127.0.0.1:port``; ``nameserver`` is "127.0.0.1:port"."""

    def __init__(
        self,
        records: Mapping[str, Sequence[Record]] | None = None,
        *,
        servfail: Iterable[str] = (),
    ) -> None:
        self._records = {_key(name): list(rrs) for name, rrs in (records or {}).items()}
        self._servfail = {_key(name) for name in servfail}
        self.queries: list[tuple[str, str]] = []
        self.port = 0
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None

    @property
    def nameserver(self) -> str:
        return f"127.0.0.1:{self.port}"

    def add(self, name: str, *records: Record) -> None:
        self._records.setdefault(_key(name), []).extend(records)

    def set(self, name: str, *records: Record) -> None:
        """Replace ``name``'s records (none: the name answers NODATA)."""
        self._records[_key(name)] = list(records)
        self._servfail.discard(_key(name))

    def remove(self, name: str) -> None:
        """Forget ``name``: it answers NXDOMAIN."""
        self._records.pop(_key(name), None)
        self._servfail.discard(_key(name))

    def fail(self, name: str) -> None:
        """Answer every query for ``name`` with SERVFAIL."""
        self._servfail.add(_key(name))

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(20):  # the UDP port may be taken for TCP; try another one
            udp, _protocol = await loop.create_datagram_endpoint(
                lambda: _Udp(self), local_addr=("127.0.0.1", 0)
            )
            port = udp.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(self._serve_tcp, "127.0.0.1", port)
            except OSError:
                udp.close()
                continue
            self._udp, self.port = udp, port
            return
        raise RuntimeError("no free port for UDP and TCP on 127.0.0.1")

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()
            self._tcp = None

    async def __aenter__(self) -> DnsServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def answer(self, packet: bytes) -> bytes | None:
        """The response to one query packet, or None for a packet that is not a query."""
        try:
            request = dnslib.DNSRecord.parse(packet)
        except dnslib.DNSError:
            return None
        reply = request.reply()
        qname = request.q.qname
        qtype = dnslib.QTYPE[request.q.qtype]
        name = _key(str(qname))
        self.queries.append((name, qtype))
        if name in self._servfail:
            reply.header.rcode = dnslib.RCODE.SERVFAIL
        elif name not in self._records:
            reply.header.rcode = dnslib.RCODE.NXDOMAIN
        else:
            for record in self._records[name]:
                rr = _resource_record(qname, qtype, record)
                if rr is not None:
                    reply.add_answer(rr)
        packed: bytes = reply.pack()
        return packed

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # RFC 1035 §4.2.2 (RFC 7766): each message is preceded by its two-byte length.
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                (length,) = struct.unpack("!H", await reader.readexactly(2))
                response = self.answer(await reader.readexactly(length))
                if response is None:
                    break
                writer.write(struct.pack("!H", len(response)) + response)
                await writer.drain()
        writer.close()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self._server = server
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector transport does not subclass asyncio.DatagramTransport; it implements it.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        response = self._server.answer(data)
        if response is not None and self._transport is not None:
            self._transport.sendto(response, addr)


def _resource_record(qname: Any, qtype: str, record: Record) -> Any:
    if qtype == "MX" and isinstance(record, MX):
        return dnslib.RR(
            qname, dnslib.QTYPE.MX, rdata=dnslib.MX(record.exchange, record.preference), ttl=_TTL
        )
    if qtype == "A" and isinstance(record, A):
        return dnslib.RR(qname, dnslib.QTYPE.A, rdata=dnslib.A(record.address), ttl=_TTL)
    if qtype == "AAAA" and isinstance(record, AAAA):
        return dnslib.RR(qname, dnslib.QTYPE.AAAA, rdata=dnslib.AAAA(record.address), ttl=_TTL)
    if qtype == "TXT" and isinstance(record, TXT):
        raw = record.text.encode()
        chunks = [raw[i : i + 255] for i in range(0, len(raw), 255)] or [b""]
        return dnslib.RR(qname, dnslib.QTYPE.TXT, rdata=dnslib.TXT(chunks), ttl=_TTL)
    if qtype == "CNAME" and isinstance(record, CNAME):
        return dnslib.RR(qname, dnslib.QTYPE.CNAME, rdata=dnslib.CNAME(record.target), ttl=_TTL)
    return None


def _key(name: str) -> str:
    return name.rstrip(".").lower()
