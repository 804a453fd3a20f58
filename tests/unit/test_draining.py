"""Shutdown of a gRPC server: calls on open connections go on after the listener closes, and a call still running
when the connections close fails at once instead of waiting for the process to exit."""

from __future__ import annotations

import asyncio

import pytest
from grpclib.client import Channel
from grpclib.exceptions import GRPCError, StreamTerminatedError
from grpclib.health.service import Health
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse

from model_manager.api.draining import DrainingServer
from tests.conftest import free_port


async def test_a_call_cut_off_at_shutdown_fails_at_once() -> None:
    port = free_port()
    server = DrainingServer([Health()])
    await server.start("127.0.0.1", port)
    channel = Channel("127.0.0.1", port)
    try:
        health = HealthStub(channel)
        # Watch answers once and then waits for a change that never comes: a call still running at shutdown.
        async with health.Watch.open() as watch:
            await watch.send_message(HealthCheckRequest(), end=True)
            assert (await watch.recv_message()).status == HealthCheckResponse.SERVING  # type: ignore[union-attr]

            server.stop_accepting()
            with pytest.raises(OSError):  # no new connections
                await asyncio.open_connection("127.0.0.1", port)
            # The open connection still takes calls while in-flight ones finish.
            assert (await health.Check(HealthCheckRequest())).status == HealthCheckResponse.SERVING

            await server.close_connections()
            # grpclib's own close would cancel the call and leave its client waiting until the process exits.
            with pytest.raises((StreamTerminatedError, GRPCError, ConnectionError)):
                await asyncio.wait_for(watch.recv_message(), 5)
    finally:
        channel.close()
