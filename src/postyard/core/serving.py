"""Listening sockets and an ASGI server whose signals belong to the role runner."""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Iterator

import uvicorn

from postyard.core.errors import ConfigurationError


class ServerWithoutSignals(uvicorn.Server):
    """uvicorn without its own signal handling: whoever runs the roles owns the signals
    (uvicorn would otherwise re-raise SIGTERM after shutdown and skip the clean exit)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind_tcp(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A listening socket, or a readable ConfigurationError (port in use, bad address)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        msg = f"cannot listen on {host}:{port}: unknown address ({exc.strerror})"
        raise ConfigurationError(msg) from exc
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(address)
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        msg = f"cannot listen on {host}:{port}: {reason}"
        raise ConfigurationError(msg) from exc
    sock.setblocking(False)
    return sock
