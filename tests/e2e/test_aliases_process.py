"""Aliases across two server processes on one PostgreSQL, each with its response cache: readers on both see the old
model or the new one while an alias is re-pointed on one, never an error or a third model, and every
acknowledged re-point is what the other replica answers next; the OpenAI SDK and grpcio clients resolve it too."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import openai
import pytest

from tests.e2e.conftest import Proc, start


def _http(proc: Proc, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(proc.base_url + path, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _loaded(proc: Proc, pb: Any, *model_ids: str) -> None:
    """Play the loader's part over the worker gRPC port."""

    async def go() -> None:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{proc.worker}") as ch:
            worker = pb.grpc.ModelsWorkerServiceStub(ch)
            for model_id in model_ids:
                await worker.CreateBaseModel(
                    pb.pb2.CreateBaseModelRequest(
                        id=model_id, path=f"models/base-models/{model_id}", formats=[pb.pb2.MODEL_FORMAT_HUGGING_FACE]
                    )
                )

    asyncio.run(go())


@pytest.mark.slow
def test_re_pointing_an_alias_on_one_replica_is_seen_whole_on_the_other(
    tmp_path: Path, fresh_database: dict[str, Any], grpcio_pb: Any
) -> None:
    config = {
        "database": fresh_database,
        "objectStore": {"local": {"path": str(tmp_path / "objects")}},
        "loader": {"enable": False},
    }
    one = start(config, tmp_path, role="server")
    two = start(config, tmp_path, role="server")
    try:
        _loaded(one, grpcio_pb, "llama-3-1", "llama-3-2")
        assert _http(one, "PUT", "/v1/aliases/chat", {"model_id": "llama-3-1"})[0] == 200
        seen: dict[str, int] = {}
        stop = threading.Event()

        def read(proc: Proc) -> None:
            while not stop.is_set():
                status, body = _http(proc, "GET", "/v1/models/chat")
                key = body["id"] if status == 200 else f"HTTP {status}"
                seen[key] = seen.get(key, 0) + 1

        readers = [threading.Thread(target=read, args=(p,)) for p in (one, two, two)]
        for t in readers:
            t.start()
        try:
            for i in range(30):
                target = "llama-3-2" if i % 2 == 0 else "llama-3-1"
                status, body = _http(one, "PUT", "/v1/aliases/chat", {"model_id": target})
                assert status == 200, body
                # Acknowledged on one: the other answers with the new model at once, cache or not.
                assert _http(two, "GET", "/v1/models/chat")[1]["id"] == target
        finally:
            stop.set()
            for t in readers:
                t.join(10)
        assert set(seen) == {"llama-3-1", "llama-3-2"}, seen

        client = openai.OpenAI(base_url=f"{two.base_url}/v1", api_key="unused")
        got = client.models.retrieve("chat")
        assert got.id == "llama-3-1"  # the last re-point (i = 29)

        async def by_grpc() -> tuple[str, list[str], list[str]]:
            pb2 = grpcio_pb.pb2
            async with grpc.aio.insecure_channel(f"127.0.0.1:{two.grpc}") as ch:
                models = grpcio_pb.grpc.ModelsServiceStub(ch)
                await models.SetAlias(pb2.SetAliasRequest(name="chat", model_id="llama-3-2"))
                model = await models.GetModel(pb2.GetModelRequest(id="chat"))
                alias = await models.GetAlias(pb2.GetAliasRequest(name="chat"))
                listed = await models.ListAliases(pb2.ListAliasesRequest())
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await models.DeleteModel(pb2.DeleteModelRequest(id="llama-3-2"))
                assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
                assert 'named by the alias "chat"' in (refused.value.details() or "")
                await models.DeleteAlias(pb2.DeleteAliasRequest(name="chat"))
                return model.id, list(model.aliases), [a.name for a in listed.data] + [str(len(alias.history))]

        model_id, model_aliases, listed = asyncio.run(by_grpc())
        assert (model_id, model_aliases) == ("llama-3-2", ["chat"])
        assert listed == ["chat", "32"]  # created, re-pointed 30 times on one and once by gRPC on two
        assert _http(one, "GET", "/v1/models/chat")[0] == 404
    finally:
        one.stop()
        two.stop()
