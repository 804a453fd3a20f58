"""The OpenAI-compatible REST front (aiohttp): JSON <-> messages, errors mapped in one middleware."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import ContentEncodingError
from aiohttp.web_protocol import RequestPayloadError
from grpclib.const import Status
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from model_manager.api import openapi
from model_manager.api.hf import HfFront
from model_manager.api.json_codec import from_json, from_query, query_flag, to_json
from model_manager.api.routes import ROUTES
from model_manager.api.status import error_body, status_of
from model_manager.api.streaming import stream_lines
from model_manager.api.wire import JSON
from model_manager.config import HttpConfig, LimitsConfig
from model_manager.core import metrics
from model_manager.core.errors import InvalidArgument, NotFound, ServiceError
from model_manager.core.identity import Identity
from model_manager.proto.llmariner.models.server.v1 import (
    ActivateModelRequest,
    CreateModelRequest,
    DeactivateModelRequest,
    DeleteAliasRequest,
    DeleteModelRequest,
    GetAliasRequest,
    GetModelPushRequest,
    GetModelRequest,
    ListAliasesRequest,
    ListModelPushesRequest,
    ListModelsRequest,
    Model,
    PushModelRequest,
    RetryModelRequest,
    SetAliasRequest,
    UpdateModelRequest,
    WatchModelRequest,
)
from model_manager.service.aliases import AliasService
from model_manager.service.auth import Api, Authenticator, Credentials
from model_manager.service.models import ModelsService
from model_manager.service.pushes import PushService
from model_manager.service.serving import Serving

log = logging.getLogger(__name__)

BODY_TIMEOUT = web.AppKey("body_timeout", float)
BODY_LIMIT = web.AppKey("body_limit", int)
CALLER = web.RequestKey("caller", Identity)
REQUEST_ID = web.RequestKey("request_id", str)
ACTION = web.RequestKey("action", str)  # the verb after the model id ("activate"), for the route label
MODEL_PATH = "/v1/models/{id}"
OPEN_PATHS = frozenset(route.path for route in ROUTES if route.open)
ACCESS = logging.getLogger("model_manager.access")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# The wire contract's table of HTTP statuses by gRPC code.
HTTP_BY_STATUS = {
    Status.OK: 200,
    Status.CANCELLED: 499,
    Status.UNKNOWN: 500,
    Status.INVALID_ARGUMENT: 400,
    Status.DEADLINE_EXCEEDED: 504,
    Status.NOT_FOUND: 404,
    Status.ALREADY_EXISTS: 409,
    Status.PERMISSION_DENIED: 403,
    Status.UNAUTHENTICATED: 401,
    Status.RESOURCE_EXHAUSTED: 429,
    Status.FAILED_PRECONDITION: 400,
    Status.ABORTED: 409,
    Status.OUT_OF_RANGE: 400,
    Status.UNIMPLEMENTED: 501,
    Status.INTERNAL: 500,
    Status.UNAVAILABLE: 503,
    Status.DATA_LOSS: 500,
}

# aiohttp's own refusals (unknown route, wrong method, body too large) as gRPC codes.
_STATUS_BY_HTTP = {
    404: Status.NOT_FOUND,
    405: Status.UNIMPLEMENTED,
    408: Status.DEADLINE_EXCEEDED,
    413: Status.RESOURCE_EXHAUSTED,
}


def error_response(
    status: Status, message: str, http_status: int | None = None, request_id: str | None = None
) -> web.Response:
    body = error_body(status, message, request_id)
    response = json_response(body, status=http_status or HTTP_BY_STATUS[status])
    if status is Status.UNAUTHENTICATED:
        response.headers["WWW-Authenticate"] = 'Bearer realm="model-manager"'
    return response


def _refusal(request: web.Request, error: Exception) -> web.Response:
    """The answer to a request whose handler raised `error`: its status and message, never internals."""
    rid = request.get(REQUEST_ID)
    if isinstance(error, ServiceError):
        return error_response(status_of(error), error.message, request_id=rid)
    if isinstance(error, web.HTTPRequestEntityTooLarge):
        limit = request.app[BODY_LIMIT]
        return error_response(Status.RESOURCE_EXHAUSTED, f"request body larger than {limit} bytes", 413, rid)
    if isinstance(error, web.HTTPException) and error.status >= 400:
        status = _STATUS_BY_HTTP.get(error.status, Status.INVALID_ARGUMENT)
        response = error_response(status, error.reason, error.status, rid)
        if error.status == 408:
            response.force_close()  # the rest of a body that did not arrive in time is not worth waiting for
        return response
    log.exception("unexpected error serving %s %s (request %s)", request.method, request.path, rid, exc_info=error)
    return error_response(Status.INTERNAL, "internal error", request_id=rid)


_REQUEST_ID_OK = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def _route(request: web.Request) -> str:
    """The route a request matched, as a bounded label ("GET /v1/models/{id}"); never the raw path."""
    resource = request.match_info.route.resource
    if resource is None:
        return f"{request.method} (no route)"
    action = request.get(ACTION)
    return f"{request.method} {MODEL_PATH}:{action}" if action else f"{request.method} {resource.canonical}"


def front_middleware(authenticate: Callable[[web.Request], Awaitable[None]], access_log: bool) -> Any:
    """The one middleware (each layer costs every request a call chain): gives each request an id (the caller's
    X-Request-Id when it is a sane token), returned in the X-Request-Id header; authenticates it; turns every
    error into the contract's error body; counts the request and its latency; and writes one log line for it."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        given = request.headers.get("X-Request-Id", "")
        rid = given if _REQUEST_ID_OK.fullmatch(given) else secrets.token_hex(16)  # as random as a uuid4, cheaper
        request[REQUEST_ID] = rid
        start = time.perf_counter()
        status = 500
        try:
            try:
                await authenticate(request)
                response = await handler(request)
            except web.HTTPException as e:
                if e.status < 400:
                    raise
                response = _refusal(request, e)
            except Exception as e:
                response = _refusal(request, e)
            if not response.prepared:  # a stream sent its headers itself (api/streaming.py)
                response.headers["X-Request-Id"] = rid
            status = response.status
            return response
        finally:
            elapsed = time.perf_counter() - start
            route = _route(request)
            metrics.observe_request("rest", route, str(status), elapsed)
            if access_log:
                fields = {
                    "method": request.method,
                    "route": route.partition(" ")[2],
                    "path": request.path,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                    "request_id": rid,
                }
                ACCESS.info("%s %s %d", request.method, request.path, status, extra={"fields": fields})

    return middleware


async def _body(request: web.Request) -> Any:
    try:
        async with asyncio.timeout(request.app[BODY_TIMEOUT]):
            raw = await request.read()
    except TimeoutError as e:
        raise web.HTTPRequestTimeout(reason="request body did not arrive in time") from e
    except (ContentEncodingError, RequestPayloadError) as e:
        encoding = request.headers.get("Content-Encoding", "")
        raise InvalidArgument(f"request body cannot be decoded as its Content-Encoding says ({encoding})") from e
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"request body is not valid JSON: {e}") from e
    except RecursionError as e:
        raise InvalidArgument("request body is not valid JSON: nested too deeply") from e
    except ValueError as e:  # Python's limit on the digits of an integer
        raise InvalidArgument(f"request body is not valid JSON: a number is too long ({e})") from e


def json_response(data: Any, status: int = 200) -> web.Response:
    """Every JSON answer of the REST port, written by orjson: on a page of 100 models the stdlib's encoder cost
    about a tenth of the request."""
    return _json_body(orjson.dumps(data), status)


def _json_body(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type="application/json", charset="utf-8")


def _ok(msg: Any) -> web.Response:
    return json_response(to_json(msg))


class RestApi:
    def __init__(
        self,
        service: ModelsService,
        ready: Callable[[], Awaitable[bool]],
        auth: Authenticator,
        http: HttpConfig | None = None,
        limits: LimitsConfig | None = None,
        refresh_metrics: Callable[[], Awaitable[None]] | None = None,
        access_log: bool = True,
        pushes: PushService | None = None,
    ) -> None:
        self.service = service
        self.aliases = AliasService(service.ctx)
        self.pushes = pushes or PushService(service.ctx, None)
        self.auth = auth
        self.ready = ready
        self.refresh_metrics = refresh_metrics
        self.access_log = access_log
        self.http = http or HttpConfig()
        self.limits = limits or LimitsConfig()

    def who(self, request: web.Request) -> Identity:
        return request[CALLER]

    async def authenticate(self, request: web.Request) -> None:
        """Every route but the health checks needs a caller (unknown paths too: no probing without a key)."""
        if request.path not in OPEN_PATHS:
            h = request.headers
            creds = Credentials(h.get("Authorization"), h.get("OpenAI-Organization"), h.get("OpenAI-Project"))
            request[CALLER] = await self.auth.authenticate(creds, Api.PUBLIC)

    def app(self) -> web.Application:
        app = web.Application(
            client_max_size=self.limits.request_body_bytes,
            middlewares=[front_middleware(self.authenticate, self.access_log)],
        )
        app[BODY_TIMEOUT] = self.http.body_timeout
        app[BODY_LIMIT] = self.limits.request_body_bytes
        # Actions on a model are served by one route per method, by the verb after the id.
        actions: dict[str, dict[str, Handler]] = {}
        for route in ROUTES:
            if route.action:
                actions.setdefault(route.method, {})[route.action] = getattr(self, route.handler)
        for route in ROUTES:
            if not route.action:
                handler: Handler = getattr(self, route.handler)
                if route.path == MODEL_PATH and route.method in actions:
                    handler = functools.partial(self.model_action, actions.pop(route.method), handler)
                app.router.add_route(route.method, aiohttp_path(route.path), handler)
        for method, verbs in actions.items():
            app.router.add_route(method, aiohttp_path(MODEL_PATH), functools.partial(self.model_action, verbs, None))
        ctx = self.service.ctx
        expiry = self.http.hf_redirect_expiry if self.http.hf_redirect else None
        HfFront(Serving(ctx), ctx.objects, self.who, expiry).add_routes(app)
        return app

    async def metrics(self, request: web.Request) -> web.Response:
        if self.refresh_metrics is not None:
            await self.refresh_metrics()
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def openapi(self, request: web.Request) -> web.Response:
        return json_response(openapi.document())

    async def healthz(self, request: web.Request) -> web.Response:
        return json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        if await self.ready():
            return json_response({"status": "ready"})
        return error_response(Status.UNAVAILABLE, "database unreachable")

    async def list_models(self, request: web.Request) -> web.Response:
        req = from_query(ListModelsRequest, request.query)
        return _json_body(await self.service.list_models_encoded(self.who(request), req, JSON))

    async def get_model(self, request: web.Request) -> web.Response:
        # The hot path: its one parameter read straight from the query (from_query builds the same message).
        include = query_flag(request.query, "include_loading_model")
        req = GetModelRequest(id=request.match_info["id"], include_loading_model=include)
        return _json_body(await self.service.get_model_encoded(self.who(request), req, JSON))

    async def delete_model(self, request: web.Request) -> web.Response:
        req = DeleteModelRequest(id=request.match_info["id"])
        return _ok(await self.service.delete_model(self.who(request), req))

    async def create_model(self, request: web.Request) -> web.Response:
        req = from_json(CreateModelRequest, await _body(request))
        return _ok(await self.service.create_model(self.who(request), req))

    async def update_model(self, request: web.Request) -> web.Response:
        req = from_json(UpdateModelRequest, await _body(request))
        if req.model is None:
            req.model = Model()
        req.model.id = request.match_info["id"]
        return _ok(await self.service.update_model(self.who(request), req))

    async def activate_model(self, request: web.Request) -> web.Response:
        await self.service.activate_model(self.who(request), ActivateModelRequest(id=request.match_info["id"]))
        return json_response({})

    async def deactivate_model(self, request: web.Request) -> web.Response:
        await self.service.deactivate_model(self.who(request), DeactivateModelRequest(id=request.match_info["id"]))
        return json_response({})

    async def retry_model(self, request: web.Request) -> web.Response:
        return _ok(await self.service.retry_model(self.who(request), RetryModelRequest(id=request.match_info["id"])))

    async def watch_model(self, request: web.Request) -> web.StreamResponse:
        req = from_query(WatchModelRequest, request.query)
        req.id = request.match_info["id"]
        events = self.service.watch_model_encoded(self.who(request), req, JSON)
        return await stream_lines(request, events, request.get(REQUEST_ID))

    async def list_aliases(self, request: web.Request) -> web.Response:
        return _ok(await self.aliases.list_aliases(self.who(request), ListAliasesRequest()))

    async def set_alias(self, request: web.Request) -> web.Response:
        req = from_json(SetAliasRequest, await _body(request))
        req.name = request.match_info["name"]
        return _ok(await self.aliases.set_alias(self.who(request), req))

    async def get_alias(self, request: web.Request) -> web.Response:
        return _ok(await self.aliases.get_alias(self.who(request), GetAliasRequest(name=request.match_info["name"])))

    async def push_model(self, request: web.Request) -> web.Response:
        req = from_json(PushModelRequest, await _body(request))
        req.id = request.match_info["id"]
        return _ok(await self.pushes.push_model(self.who(request), req))

    async def list_model_pushes(self, request: web.Request) -> web.Response:
        req = from_query(ListModelPushesRequest, request.query)
        return _ok(await self.pushes.list_model_pushes(self.who(request), req))

    async def get_model_push(self, request: web.Request) -> web.Response:
        req = GetModelPushRequest(id=request.match_info["id"])
        return _ok(await self.pushes.get_model_push(self.who(request), req))

    async def delete_alias(self, request: web.Request) -> web.Response:
        req = DeleteAliasRequest(name=request.match_info["name"])
        return _ok(await self.aliases.delete_alias(self.who(request), req))

    async def model_action(
        self, actions: dict[str, Handler], plain: Handler | None, request: web.Request
    ) -> web.StreamResponse:
        # Ids may contain ':' ("gemma:2b", "ft:base:suffix"): the verb is what follows the last colon, and where
        # the method has a plain route too (GET), a tail that is no verb is part of the id.
        model_id, sep, verb = request.match_info["id"].rpartition(":")
        if sep and verb in actions:
            request.match_info["id"] = model_id
            request[ACTION] = verb
            return await actions[verb](request)
        if plain is not None:
            return await plain(request)
        verbs = " or ".join(f":{v}" for v in actions)
        raise NotFound(f"no such action {verb!r}: use {request.method} /v1/models/{{id}}{verbs}")


def aiohttp_path(path: str) -> str:
    """A route table path as aiohttp routes it: the id may span several segments."""
    return path.replace("{id}", "{id:.+}")
