import pytest

from model_manager.service.context import ServiceContext
from tests.helpers import Api


@pytest.fixture
def api(ctx: ServiceContext) -> Api:
    return Api(ctx)
