"""Slow or silent HTTP clients cannot hold the REST port's connections for ever."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Proc, embedded_config, start


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Proc]:
    proc = start({**embedded_config(tmp_path), "http": {"idleTimeout": "1s", "bodyTimeout": "1s"}}, tmp_path)
    yield proc
    proc.stop()


def _until_closed(sock: socket.socket, limit: float = 10) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    began, got = time.monotonic(), b""
    sock.settimeout(limit)
    while chunk := sock.recv(65536):
        got += chunk
    return got, time.monotonic() - began


@pytest.mark.parametrize(
    "sent",
    [
        b"",  # connects and says nothing
        b"GET /v1/models HTTP/1.1\r\nHost: x\r\n",  # headers never finished
    ],
)
def test_connections_without_a_complete_request_are_closed(server: Proc, sent: bytes) -> None:
    with socket.create_connection(("127.0.0.1", server.http)) as sock:
        sock.sendall(sent)
        got, took = _until_closed(sock)
    assert took < 5, f"still open after {took:.1f}s"
    assert b"200 OK" not in got


def test_a_body_that_never_arrives_is_a_408(server: Proc) -> None:
    with socket.create_connection(("127.0.0.1", server.http)) as sock:
        sock.sendall(b'POST /v1/models HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"id": ')
        got, took = _until_closed(sock)
    assert took < 5
    assert got.startswith(b"HTTP/1.1 408"), got[:200]
    assert b"request body did not arrive in time" in got
