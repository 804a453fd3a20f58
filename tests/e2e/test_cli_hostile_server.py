"""The `models` CLI against a server that answers with what no Models API server sends: too much, not JSON, JSON
nested past any parser's depth, the wrong shapes, endless watch lines. Each ends with exit 1 and one line that says
what came, never a traceback, and the CLI reads no more than its caps (64 MiB an answer, 4 MiB a watch event)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web

from tests.fakes.threaded import serve_in_thread

MiB = 1024 * 1024


async def _endless(request: web.Request) -> web.StreamResponse:
    """An answer of 1 GiB, written a MiB at a time (never held whole here either)."""
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    try:
        for _ in range(1024):
            await response.write(b"[" * MiB)
    except (ConnectionError, RuntimeError):
        pass  # the client stopped reading, as it should
    return response


async def _long_line(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    try:
        for _ in range(64):
            await response.write(b" " * MiB)  # one line that never ends
    except (ConnectionError, RuntimeError):
        pass
    return response


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _body(data: bytes, status: int = 200) -> Handler:
    async def answer(request: web.Request) -> web.StreamResponse:
        return web.Response(body=data, status=status, content_type="application/json")

    return answer


def _app() -> web.Application:
    deep = b"[" * 200_000 + b"]" * 200_000
    routes: dict[str, Handler] = {
        "/v1/models/huge": _endless,
        "/v1/models/deep": _body(deep),
        "/v1/models/list-not-object": _body(b"[1, 2]"),
        "/v1/models/not-json": _body(b"<html>proxy error</html>"),
        "/v1/models/refused": _body(b"[" * 200_000, status=400),
        "/v1/models/endless:watch": _long_line,
        "/v1/models/numbers:watch": _body(b"5\n"),
        "/v1/models/pending": _body(
            b'{"id": "pending", "object": "model", "deleted": true, "files_removal_pending": true,'
            b' "files_removal_error": "S3 unreachable deleting objects"}'
        ),
    }
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_route("*", path, handler)
    app.router.add_get("/v1/models", _body(b'{"object": "list", "data": 5}'))
    return app


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["get", "huge"], "answered more than 64.0 MiB; not reading it"),
        (["get", "deep"], "is not JSON (RecursionError)"),
        (["get", "list-not-object"], "is not a JSON object (it is list)"),
        (["get", "not-json"], "is not JSON (JSONDecodeError)"),
        (["delete", "refused"], "Bad Request (HTTP 400)"),
        (["wait", "endless"], "sent a watch event of more than 4.0 MiB"),
        (["wait", "numbers"], "a watch event from http://127.0.0.1"),
        (["list"], "answered with a document the Models API does not describe (TypeError"),
    ],
)
def test_a_hostile_server_gets_one_line_and_exit_1(args: list[str], said: str) -> None:
    with serve_in_thread(_app()) as url:
        done = subprocess.run(
            [sys.executable, "-m", "model_manager", "models", "--server", url, *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1, done.stderr
    assert said in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr


def test_a_delete_whose_files_stay_for_now_says_so() -> None:
    """Not hostile: a server whose object store is down deletes the model and says its files go later."""
    with serve_in_thread(_app()) as url:
        done = subprocess.run(
            [sys.executable, "-m", "model_manager", "models", "--server", url, "delete", "pending"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        "pending: deleted; its files are not removed yet (S3 unreachable deleting objects); the server retries\n"
    )
