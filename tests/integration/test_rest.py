"""The REST front over real HTTP: routes, JSON, status codes and bad input (wire contract)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import create_async_engine

from model_manager.api import openapi
from model_manager.api.rest import RestApi
from model_manager.config import LimitsConfig
from model_manager.proto.llmariner.models.server import v1 as pb
from model_manager.service.context import ServiceContext
from model_manager.service.health import Health
from model_manager.service.models import ModelsService
from model_manager.store.database import Database
from tests.conftest import free_port
from tests.helpers import WORKER, Api, no_auth


def _error(body: dict[str, Any], code: int, type_: str) -> str:
    assert set(body) == {"code", "message", "details", "error", "request_id"}
    assert body["code"] == code and body["details"] == [] and len(body["request_id"]) == 32
    assert body["error"] == {"message": body["message"], "type": type_, "code": code}
    return str(body["message"])


async def test_create_get_list_activate_delete(http: TestClient, api: Api) -> None:  # type: ignore[type-arg]
    r = await http.post("/v1/models", json={"id": "gemma:2b", "source_repository": "SOURCE_REPOSITORY_OLLAMA"})
    assert r.status == 200
    assert (await r.json())["loading_status"] == "MODEL_LOADING_STATUS_REQUESTED"
    await api.loaded_base("org-name")
    r = await http.get("/v1/models")
    body = await r.json()
    assert body["object"] == "list" and [m["id"] for m in body["data"]] == ["org-name"]
    assert body["has_more"] is False and body["total_items"] == 1
    assert isinstance(body["data"][0]["created"], int)
    r = await http.get("/v1/models/gemma:2b", params={"include_loading_model": "true"})
    assert (await r.json())["id"] == "gemma:2b"
    assert (await http.post("/v1/models/org-name:activate")).status == 200
    r = await http.delete("/v1/models/org-name")
    assert r.status == 400
    assert _error(await r.json(), 9, "failed_precondition") == 'model "org-name" is active'
    assert (await http.post("/v1/models/org-name:deactivate")).status == 200
    r = await http.delete("/v1/models/org-name")
    assert await r.json() == {
        "id": "org-name",
        "object": "model",
        "deleted": True,
        # Extensions, as every default value is written: the files went with it.
        "files_removal_pending": False,
        "files_removal_error": "",
    }


async def test_ids_with_slashes_and_colons(http: TestClient, api: Api) -> None:  # type: ignore[type-arg]
    await http.post("/v1/models", json={"id": "org/name", "source_repository": 2})
    r = await http.get("/v1/models/org/name?include_loading_model=true")
    assert (await r.json())["id"] == "org/name"
    await api.loaded_base("b")
    ft = await api.loaded_fine_tuned("b", "x")
    assert (await http.post(f"/v1/models/{ft}:activate")).status == 200
    assert (await api.get(ft)).activation_status == 1


async def test_patch_updates_config_with_a_string_field_mask(http: TestClient, api: Api) -> None:  # type: ignore[type-arg]
    await api.loaded_base("m")
    body = {"model": {"config": {"runtime_config": {"replicas": 3}}}, "update_mask": "config.runtime_config.replicas"}
    r = await http.patch("/v1/models/m", json=body)
    assert r.status == 200
    assert (await r.json())["config"]["runtime_config"] == {"resources": {"gpu": 1}, "replicas": 3, "extra_args": []}


async def test_not_found_is_404(http: TestClient) -> None:  # type: ignore[type-arg]
    r = await http.get("/v1/models/missing")
    assert r.status == 404
    assert _error(await r.json(), 5, "not_found") == 'model "missing" not found'
    r = await http.get("/v2/nothing")
    assert r.status == 404 and (await r.json())["code"] == 5
    r = await http.post("/v1/models/m:explode")
    assert r.status == 404


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "field"),
    [
        ("post", "/v1/models", {"data": b"{not json"}, "not valid JSON"),
        ("post", "/v1/models", {"json": ["a"]}, "request body"),
        ("post", "/v1/models", {"json": {"id": 1}}, "id"),
        ("post", "/v1/models", {"json": {"id": "a/b", "source_repository": "GIT"}}, "source_repository"),
        ("post", "/v1/models", {"json": {"id": "", "source_repository": 2}}, "id"),
        ("post", "/v1/models", {"json": {"id": "a/" + "b" * 300, "source_repository": 2}}, "256"),
        ("post", "/v1/models", {"json": {"id": "a/../b", "source_repository": 1}}, ".."),
        ("get", "/v1/models?limit=-1", {}, "limit"),
        ("get", "/v1/models?limit=abc", {}, "limit"),
        ("get", "/v1/models?limit=99999999999", {}, "limit"),
        ("patch", "/v1/models/m", {"json": {"update_mask": 5}}, "update_mask"),
        ("post", "/v1/models", {"data": b"\xff\xfe"}, "JSON"),
        ("post", "/v1/models", {"data": b"[" * 50_000 + b"]" * 50_000}, "nested"),
        ("post", "/v1/models", {"data": b'{"id": "a/b", "source_repository": ' + b"9" * 5000 + b"}"}, "number"),
        ("get", "/v1/models?limit=" + "9" * 5000, {}, "limit"),
        ("post", "/v1/models", {"data": b'{"id": "a/\\ud800", "source_repository": 1}'}, "id"),
        ("post", "/v1/models", {"data": b'{"id": "a/b\\u0000", "source_repository": 1}'}, "id"),
        (
            "post",
            "/v1/models",
            {"data": b'{"id": "a/b"}', "headers": {"Content-Encoding": "gzip"}},
            "Content-Encoding",
        ),
        ("get", "/v1/models?after=a%00b", {}, "after"),
        (
            "patch",
            "/v1/models/m",
            {
                "json": {
                    "model": {"config": {"runtime_config": {"extra_args": ["\ud800"]}}},
                    "update_mask": "config.runtime_config.extra_args",
                }
            },
            "extra_args",
        ),
    ],
)
async def test_bad_input_is_a_400_naming_the_problem_and_changes_nothing(
    http: TestClient,  # type: ignore[type-arg]
    api: Api,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    field: str,
) -> None:
    r = await getattr(http, method)(path, **kwargs)
    assert r.status == 400
    assert field in _error(await r.json(), 3, "invalid_argument")
    assert (await api.list(include_loading_models=True)).total_items == 0


async def test_control_characters_in_path_ids_are_rejected(http: TestClient) -> None:  # type: ignore[type-arg]
    r = await http.get("/v1/models/a%00b")
    assert r.status == 400 and "control characters" in (await r.json())["message"]
    # Bytes that are not UTF-8 stay percent-encoded: an id nobody has, not a server error.
    assert (await http.get("/v1/models/a%ED%A0%80")).status == 404


async def test_body_over_one_mebibyte_is_413(http: TestClient) -> None:  # type: ignore[type-arg]
    r = await http.post("/v1/models", data=b'{"id": "' + b"a" * (1024 * 1024 + 10) + b'"}')
    assert r.status == 413
    assert (await r.json())["code"] == 8


async def test_health_and_readiness(http: TestClient) -> None:  # type: ignore[type-arg]
    assert (await http.get("/healthz")).status == 200
    assert (await http.get("/readyz")).status == 200


async def test_readiness_fails_when_the_database_is_unreachable(ctx: ServiceContext) -> None:
    unreachable = Database(create_async_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/none"))
    client = TestClient(
        TestServer(RestApi(ModelsService(ctx), Health(replace(ctx, db=unreachable)).ready, no_auth(ctx)).app())
    )
    await client.start_server()
    try:
        r = await client.get("/readyz")
        assert r.status == 503
        assert (await r.json())["error"]["type"] == "unavailable"
        assert (await client.get("/healthz")).status == 200
    finally:
        await client.close()
        await unreachable.close()


async def test_the_openapi_document_matches_the_routes_the_server_serves(http: TestClient) -> None:  # type: ignore[type-arg]
    r = await http.get("/openapi.json")
    assert r.status == 200
    doc = await r.json()
    assert doc == openapi.document()
    documented = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    served = set()
    for route in http.server.app.router.routes():  # type: ignore[attr-defined]
        if route.method == "HEAD":
            continue
        canonical = route.resource.canonical if route.resource is not None else ""
        served.add((route.method, canonical))
    # The Hugging Face protocol under /hf is the Hub's, which huggingface_hub documents; this document is the API's.
    hf = {r for r in served if r[1].startswith("/hf/")}
    assert hf == {("GET", "/hf/api/models/{rest}"), ("GET", "/hf/{rest}")}
    served -= hf
    # Actions are served by one route and documented one by one.
    actions = {(m, p) for m, p in documented if "}:" in p}
    assert served == (documented - actions) | {("POST", "/v1/models/{id}")}
    assert {p.rsplit(":", 1)[1] for _, p in actions} == {"activate", "deactivate", "push", "retry", "watch"}
    assert doc["paths"]["/v1/models/{id}:watch"]["get"]["responses"]["200"]["content"].keys() == {
        "application/x-ndjson"
    }
    schemas = doc["components"]["schemas"]
    assert schemas["Model"]["properties"]["loading_status"]["enum"][1] == "MODEL_LOADING_STATUS_REQUESTED"


async def test_limits_are_configurable(ctx: ServiceContext) -> None:
    limits = LimitsConfig(request_body_bytes=2048, page_size=2)
    models = ModelsService(replace(ctx, limits=limits))
    client = TestClient(TestServer(RestApi(models, Health(ctx).ready, no_auth(ctx), limits=limits).app()))
    await client.start_server()
    try:
        r = await client.post("/v1/models", data=b'{"id": "' + b"a" * 3000 + b'"}')
        assert r.status == 413 and "larger than 2048 bytes" in (await r.json())["message"]
        for i in range(3):
            await client.post("/v1/models", json={"id": f"org/m{i}", "source_repository": 1})
        page = await (await client.get("/v1/models?limit=100&include_loading_models=true")).json()
        assert len(page["data"]) == 2 and page["has_more"] and page["total_items"] == 3
    finally:
        await client.close()


async def test_the_file_selection_is_taken_from_the_body_and_handed_to_the_loader(
    http: TestClient,  # type: ignore[type-arg]
    api: Api,
) -> None:
    body = {
        "id": "org/name",
        "source_repository": "SOURCE_REPOSITORY_HUGGING_FACE",
        "include": ["*.json", "*.safetensors"],
        "exclude": ["original/"],
        "allow_pickle": True,
    }
    r = await http.post("/v1/models", json=body)
    assert r.status == 200, await r.text()
    claim = await api.worker.acquire_unloaded_base_model(WORKER, pb.AcquireUnloadedBaseModelRequest())
    assert (claim.base_model_id, claim.include, claim.exclude, claim.allow_pickle) == (
        "org/name",
        ["*.json", "*.safetensors"],
        ["original/"],
        True,
    )
    bad = await http.post("/v1/models", json={**body, "id": "org/other", "include": ["/etc/passwd"]})
    assert bad.status == 400
    assert "include: '/etc/passwd' is not a pattern" in _error(await bad.json(), 3, "invalid_argument")
    bad = await http.post("/v1/models", json={**body, "id": "org/other", "allow_pickle": "yes"})
    assert bad.status == 400 and "allow_pickle" in _error(await bad.json(), 3, "invalid_argument")
    assert [m.id for m in (await api.list(include_loading_models=True)).data] == ["org/name"]
