from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from model_manager.api.rest import RestApi
from model_manager.service.context import ServiceContext
from model_manager.service.health import Health
from model_manager.service.models import ModelsService
from tests.helpers import Api, no_auth


@pytest.fixture
def api(ctx: ServiceContext) -> Api:
    return Api(ctx)


@pytest.fixture
async def http(ctx: ServiceContext) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    """The REST front over real HTTP, auth off."""
    client = TestClient(TestServer(RestApi(ModelsService(ctx), Health(ctx).ready, no_auth(ctx)).app()))
    await client.start_server()
    yield client
    await client.close()
