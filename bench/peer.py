"""The honest peer: a minimal hand-written model API (aiohttp + grpclib + plain asyncpg + orjson, as ours) over
its own table holding the same rows as ours, in the same PostgreSQL. It answers the hot paths with the same bytes
(the benchmark checks) and queries the database for every request, as such an app does.

`python -m bench.peer prepare DB` copies base_models into its table; `python -m bench.peer serve DB HTTP GRPC
WORKER` serves REST, public gRPC and worker gRPC.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import asyncpg
import orjson
from aiohttp import web
from grpclib.server import Server

from bench.pgdb import async_url
from model_manager.api.json_codec import to_json
from model_manager.proto.llmariner.models.server import v1 as pb
from model_manager.service import model_config

TENANT = "default-tenant-id"
STATUS = {s.value: f"MODEL_LOADING_STATUS_{s.name}" for s in pb.ModelLoadingStatus}
SOURCE = {s.value: f"SOURCE_REPOSITORY_{s.name}" for s in pb.SourceRepository}
FORMAT = {s.value: f"MODEL_FORMAT_{s.name}" for s in pb.ModelFormat}
ACTIVATION = {s.value: f"ACTIVATION_STATUS_{s.name}" for s in pb.ActivationStatus}
COLUMNS = (
    "model_id, created, loading_status, source_repository, loading_failure_reason, loading_status_message, "
    "formats, activation_status, config, config_json, revision"
)
LIST = f"""SELECT {COLUMNS} FROM peer_models WHERE tenant_id = $1 AND loading_status IN (0, 3)
           ORDER BY activation_status, model_id LIMIT $2"""
COUNT = "SELECT count(*) FROM peer_models WHERE tenant_id = $1 AND loading_status IN (0, 3)"
GET = f"SELECT {COLUMNS} FROM peer_models WHERE tenant_id = $1 AND model_id = $2"
ALL = f"SELECT {COLUMNS} FROM peer_models WHERE tenant_id = $1 AND loading_status IN (0, 3) ORDER BY model_id"


async def prepare(db: str) -> None:
    conn = await asyncpg.connect(_dsn(db))
    try:
        await conn.execute(
            """CREATE TABLE peer_models (
                 tenant_id text NOT NULL, model_id text NOT NULL, created bigint NOT NULL,
                 loading_status int NOT NULL, source_repository int NOT NULL,
                 loading_failure_reason text NOT NULL, loading_status_message text NOT NULL,
                 formats int[] NOT NULL, activation_status int NOT NULL, config bytea, config_json json,
                 revision text NOT NULL, PRIMARY KEY (tenant_id, model_id));
               CREATE INDEX peer_models_listing ON peer_models (tenant_id, activation_status, model_id);
               INSERT INTO peer_models
               SELECT tenant_id, model_id, created_at, loading_status, source_repository, loading_failure_reason,
                      loading_status_message, COALESCE(string_to_array(NULLIF(formats, ''), ',')::int[], '{}'),
                      activation_status, config, NULL, revision
               FROM base_models WHERE project_id = ''"""
        )
        # The config as a hand-written app would keep it for its JSON answers: as JSON.
        for (blob,) in await conn.fetch("SELECT DISTINCT config FROM peer_models"):
            doc = json.dumps(to_json(model_config.decode(blob)))
            await conn.execute("UPDATE peer_models SET config_json = $1::json WHERE config = $2", doc, blob)
        await conn.execute("ANALYZE peer_models")
    finally:
        await conn.close()


def _dsn(db: str) -> str:
    return async_url(db).replace("postgresql+asyncpg", "postgresql")


def _json_model(r: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": r["model_id"],
        "created": r["created"],
        "object": "model",
        "owned_by": "system",
        "loading_status": STATUS[r["loading_status"]],
        "source_repository": SOURCE[r["source_repository"]],
        "loading_failure_reason": r["loading_failure_reason"],
        "loading_status_message": r["loading_status_message"],
        "formats": [FORMAT[f] for f in r["formats"]],
        "is_base_model": True,
        "base_model_id": "",
        "activation_status": ACTIVATION[r["activation_status"]],
        "config": orjson.loads(r["config_json"]),
        "revision": r["revision"],
        "files": [],
        "loading_attempts": [],
        "aliases": [],  # no alias names the peer's models (ours look theirs up only for flagged rows)
    }


def _pb_model(r: asyncpg.Record) -> pb.Model:
    return pb.Model(
        id=r["model_id"],
        created=r["created"],
        object="model",
        owned_by="system",
        loading_status=pb.ModelLoadingStatus(r["loading_status"]),
        source_repository=pb.SourceRepository(r["source_repository"]),
        loading_failure_reason=r["loading_failure_reason"],
        loading_status_message=r["loading_status_message"],
        formats=[pb.ModelFormat(f) for f in r["formats"]],
        is_base_model=True,
        activation_status=pb.ActivationStatus(r["activation_status"]),
        config=pb.ModelConfig.parse(r["config"]),
        revision=r["revision"],
    )


class Peer:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def page(self, limit: int) -> tuple[list[asyncpg.Record], int]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(LIST, TENANT, limit + 1)
            total = await conn.fetchval(COUNT, TENANT)
        return list(rows), int(total)

    async def one(self, model_id: str) -> asyncpg.Record:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(GET, TENANT, model_id)
        if row is None:
            raise web.HTTPNotFound()
        return row

    # REST

    async def ready(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ready"})

    async def rest_list(self, request: web.Request) -> web.Response:
        limit = int(request.query.get("limit", "100"))
        rows, total = await self.page(limit)
        body = {
            "object": "list",
            "data": [_json_model(r) for r in rows[:limit]],
            "has_more": len(rows) > limit,
            "total_items": total,
        }
        return web.Response(body=orjson.dumps(body), content_type="application/json", charset="utf-8")

    async def rest_get(self, request: web.Request) -> web.Response:
        body = orjson.dumps(_json_model(await self.one(request.match_info["id"])))
        return web.Response(body=body, content_type="application/json", charset="utf-8")


class PublicGrpc(pb.ModelsServiceBase):
    def __init__(self, peer: Peer) -> None:
        self.peer = peer

    async def get_model(self, message: pb.GetModelRequest) -> pb.Model:
        return _pb_model(await self.peer.one(message.id))

    async def list_models(self, message: pb.ListModelsRequest) -> pb.ListModelsResponse:
        limit = message.limit or 100
        rows, total = await self.peer.page(limit)
        data = [_pb_model(r) for r in rows[:limit]]
        return pb.ListModelsResponse(object="list", data=data, has_more=len(rows) > limit, total_items=total)


class WorkerGrpc(pb.ModelsWorkerServiceBase):
    def __init__(self, peer: Peer) -> None:
        self.peer = peer

    async def list_models(self, message: pb.ListModelsRequest) -> pb.ListModelsResponse:
        async with self.peer.pool.acquire() as conn:
            rows = await conn.fetch(ALL, TENANT)
        data = [_pb_model(r) for r in rows]
        return pb.ListModelsResponse(object="list", data=data, has_more=False, total_items=len(data))


async def serve(db: str, http: int, grpc: int, worker: int) -> None:
    pool = await asyncpg.create_pool(_dsn(db), min_size=10, max_size=30)
    peer = Peer(pool)
    app = web.Application()
    app.router.add_get("/v1/models", peer.rest_list)
    app.router.add_get("/v1/models/{id:.+}", peer.rest_get)
    app.router.add_get("/readyz", peer.ready)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", http).start()
    public, internal = Server([PublicGrpc(peer)]), Server([WorkerGrpc(peer)])
    await public.start("127.0.0.1", grpc)
    await internal.start("127.0.0.1", worker)
    await asyncio.Event().wait()


if __name__ == "__main__":
    if sys.argv[1] == "prepare":
        asyncio.run(prepare(sys.argv[2]))
    else:
        asyncio.run(serve(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])))
