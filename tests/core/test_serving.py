"""Listening sockets: sharing a port between processes (SO_REUSEPORT) only on purpose."""

from __future__ import annotations

import pytest

from postyard.core.errors import ConfigurationError
from postyard.core.serving import bind_tcp


def test_processes_that_share_join_the_first_one() -> None:
    first = bind_tcp("127.0.0.1", 0, reuse_port=True, first=True)
    try:
        port = first.getsockname()[1]
        joined = bind_tcp("127.0.0.1", port, reuse_port=True)
        joined.close()
    finally:
        first.close()


def test_a_port_held_by_a_sharing_socket_is_not_taken_by_a_first_one() -> None:
    # A second `postyard up` on the same port must fail, not take half the connections.
    held = bind_tcp("127.0.0.1", 0, reuse_port=True)
    try:
        port = held.getsockname()[1]
        with pytest.raises(ConfigurationError, match="address already in use"):
            bind_tcp("127.0.0.1", port, reuse_port=True, first=True)
        with pytest.raises(ConfigurationError, match="address already in use"):
            bind_tcp("127.0.0.1", port)
    finally:
        held.close()


def test_a_port_held_without_sharing_cannot_be_joined() -> None:
    held = bind_tcp("127.0.0.1", 0)
    try:
        with pytest.raises(ConfigurationError, match="address already in use"):
            bind_tcp("127.0.0.1", held.getsockname()[1], reuse_port=True)
    finally:
        held.close()
