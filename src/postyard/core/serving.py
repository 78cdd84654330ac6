"""Listening sockets and an ASGI server whose signals belong to the role runner."""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn

from postyard.core.errors import ConfigurationError


class ServerWithoutSignals(uvicorn.Server):
    """uvicorn without its own signal handling: whoever runs the roles owns the signals
    (uvicorn would otherwise re-raise SIGTERM after shutdown and skip the clean exit)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind_tcp(
    host: str, port: int, *, reuse_port: bool = False, first: bool = False
) -> socket.socket:
    """A listening socket, or a readable ConfigurationError (port in use, bad address).

    ``reuse_port``: other processes of this user may listen on the same port (SO_REUSEPORT)
    and the kernel spreads new connections over them. ``first`` (with ``reuse_port``): the
    port must be free, not even held by another process that allows sharing, so a second
    Postyard started by mistake on the same port fails instead of taking half the traffic.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        msg = f"cannot listen on {host}:{port}: unknown address ({exc.strerror})"
        raise ConfigurationError(msg) from exc
    family, _, _, _, address = infos[0]
    if reuse_port and first:
        # A socket without SO_REUSEPORT binds only where nobody is; it never listens, so
        # closing it frees the port for the real one at once.
        with _bind(host, port, family, address, reuse_port=False) as probe:
            address = probe.getsockname()
    sock = _bind(host, port, family, address, reuse_port=reuse_port)
    try:
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        raise _cannot_listen(host, port, exc) from exc
    sock.setblocking(False)
    return sock


def _bind(host: str, port: int, family: int, address: Any, *, reuse_port: bool) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise _cannot_listen(host, port, exc) from exc
    return sock


def _cannot_listen(host: str, port: int, exc: OSError) -> ConfigurationError:
    reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
    return ConfigurationError(f"cannot listen on {host}:{port}: {reason}")
