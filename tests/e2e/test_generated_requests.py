"""Hundreds of requests generated from the OpenAPI document (schemathesis) against a real model-manager process:
no 5xx, and every answer fits the document."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi import checks as openapi_checks

from tests.e2e.conftest import Proc, embedded_config, start
from tests.e2e.pgcluster import private_cluster

# What the document promises: no server error, and answers whose status, type and body it describes. Not that
# every schema-valid request is accepted: ids, sources and limits follow rules the schema does not spell out, and
# those requests get a 400 that names the rule.
CHECKS = [
    not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
]


@pytest.fixture(params=["sqlite", "postgres"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    """A real process on each database: some text only PostgreSQL refuses (NUL), so both are driven."""
    tmp = tmp_path_factory.mktemp("generated")
    config = embedded_config(tmp)
    cluster = None
    if request.param == "postgres":
        cluster = private_cluster()
        database = {"host": "127.0.0.1", "port": cluster.port, "database": "gen", "createDatabase": True}
        config["database"] = {**database, "autoMigrate": True}
    proc = start(config, tmp)
    try:
        yield proc
    finally:
        assert proc.stop() == 0, proc.output()[-3000:]
        if cluster is not None:
            cluster.remove()


def test_generated_requests_get_no_server_error_and_fit_the_document(served: Proc) -> None:
    schema = schemathesis.openapi.from_url(f"{served.base_url}/openapi.json")
    # An operation the document describes badly comes back as an error, and .ok() on it fails the test.
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 9
    calls = 0
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: Any) -> None:
            nonlocal calls
            calls += 1
            if case.path.endswith(":watch"):
                # A watch of a model that a generated POST created (a loading model, as nothing loads here) streams
                # until its load ends when timeout_seconds is 0: bound it, keeping the values that are refused.
                query = dict(case.query or {})
                value = query.get("timeout_seconds")
                if not isinstance(value, int) or value == 0 or value > 1:
                    query["timeout_seconds"] = 1
                case.query = query
            case.call_and_validate(checks=CHECKS)

        check()
    assert calls >= 200, calls
    print(f"{calls} generated requests")
