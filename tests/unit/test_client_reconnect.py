"""`models wait` keeps following a load when its stream is lost: a server shutting down (a last line of code 14), a
503 during a database outage, a cut connection; it gives up on what asking again cannot fix."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from model_manager.client import cli as client_cli
from model_manager.client.cli import ApiError, Client, wait
from tests.fakes.threaded import serve_in_thread


def _model(status: str, **kw: Any) -> bytes:
    return json.dumps({"id": "org/m", "loading_status": f"MODEL_LOADING_STATUS_{status}", **kw}).encode() + b"\n"


Answer = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _server(answers: list[Answer]) -> tuple[web.Application, list[str]]:
    """A stand-in for GET /v1/models/{id}:watch that answers each connection with the next of `answers`."""
    seen: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append(request.path_qs)
        return await answers[len(seen) - 1](request)

    app = web.Application()
    app.router.add_get("/v1/models/{id:.+}", handler)
    return app, seen


def _stream(*lines: bytes) -> Answer:
    async def answer(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        for line in lines:
            await response.write(line)
        await response.write_eof()
        return response

    return answer


def _status(code: int, message: str) -> Answer:
    async def answer(request: web.Request) -> web.Response:
        return web.json_response({"code": 14, "message": message, "error": {}}, status=code)

    return answer


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("model_manager.client.cli.time.sleep", lambda s: None)


def test_a_lost_stream_is_watched_again_until_the_load_ends() -> None:
    shutting_down = json.dumps({"code": 14, "message": "the server is shutting down", "error": {}}).encode() + b"\n"
    app, seen = _server(
        [
            _stream(_model("LOADING"), shutting_down),
            _status(503, "database unavailable, try again"),
            _stream(_model("LOADING"), _model("SUCCEEDED", files=[{"size": 3}])),
        ]
    )
    out = io.StringIO()
    with serve_in_thread(app) as url:
        loaded = wait(Client(url), "org/m", out)
    assert loaded["loading_status"] == "MODEL_LOADING_STATUS_SUCCEEDED" and len(seen) == 3
    lines = out.getvalue().splitlines()
    assert lines[0] == "org/m: loading"
    assert lines[1] == "org/m: the server is shutting down; watching again"
    assert lines[2].startswith("org/m: database unavailable, try again (HTTP 503); watching again")
    assert lines[-1].startswith("org/m: loaded, 3 B in 1 files after")


def test_what_asking_again_cannot_fix_ends_the_wait_at_once() -> None:
    deleted = json.dumps({"code": 5, "message": 'model "org/m" not found', "error": {}}).encode() + b"\n"
    app, seen = _server([_stream(_model("LOADING"), deleted)])
    with serve_in_thread(app) as url, pytest.raises(ApiError, match='model "org/m" not found'):
        wait(Client(url), "org/m", io.StringIO())
    assert len(seen) == 1


def test_a_server_that_stays_away_is_given_up_on() -> None:
    app, seen = _server([_status(503, "database unavailable, try again")] * 10)
    with serve_in_thread(app) as url, pytest.raises(ApiError, match="HTTP 503"):
        wait(Client(url), "org/m", io.StringIO())
    assert len(seen) == client_cli.RECONNECTS + 1


def test_timeout_is_asked_of_the_server_and_named_when_it_passes() -> None:
    async def quiet(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        await response.write(_model("REQUESTED"))
        await asyncio.sleep(float(request.query["timeout_seconds"]))  # as the server ends a stream at its timeout
        await response.write_eof()
        return response

    app, seen = _server([quiet] * 3)
    with serve_in_thread(app) as url, pytest.raises(ApiError, match=r"^org/m: still requested after 1 s$"):
        wait(Client(url), "org/m", io.StringIO(), timeout=1)
    assert seen[0] == "/v1/models/org/m:watch?timeout_seconds=1"
