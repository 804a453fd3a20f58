"""A tenant's loader stores where the server says: a tenant other than the default one in its own area, base models
included, and never in another tenant's copy of the same model."""

from __future__ import annotations

from dataclasses import replace

from model_manager.core.identity import Identity, Role
from model_manager.proto.llmariner.models.server import v1 as pb
from tests.helpers import WHO, Api, hf_prefix
from tests.loader.conftest import Harness, base_path

B_ADMIN = Identity("tenant-b", "org-b", "p1", Role.ADMIN)
B_WORKER = Identity("tenant-b", "", "", Role.WORKER)
FILES = {"config.json": b'{"model_type": "bert"}', "model.safetensors": b"w" * 200_000}


async def test_two_tenants_load_the_same_repo_each_into_its_own_area(harness: Harness, api: Api) -> None:
    repo = harness.hub.add("org/open", dict(FILES))
    await api.request_base("org/open")
    await harness.drain()
    await api.request_base("org/open", who=B_ADMIN)
    await replace(harness, worker_identity=B_WORKER).drain()

    default_path = await base_path(api, "org-open")
    b_path = (await api.worker.get_base_model_path(B_WORKER, pb.GetBaseModelPathRequest(id="org-open"))).path
    assert default_path == hf_prefix("org/open")  # llmariner's layout for the default tenant
    assert b_path == "tenants/tenant-b/models/base-models/" + hf_prefix("org/open").removeprefix("models/base-models/")
    assert repo.served == 2 * sum(len(d) for d in FILES.values())  # the same content, stored once per tenant
    for path in (default_path, b_path):
        assert sorted(o.key.rsplit("/", 1)[1] for o in await harness.store.list_objects(path + "/")) == sorted(FILES)

    # Deleting B's model removes B's copy and leaves the default tenant's.
    await api.models.delete_model(B_ADMIN, pb.DeleteModelRequest(id="org-open"))
    assert await harness.store.list_objects("tenants/") == []
    assert len(await harness.store.list_objects(default_path + "/")) == len(FILES)
    assert (await api.get("org-open", WHO)).loading_status == pb.ModelLoadingStatus.SUCCEEDED
