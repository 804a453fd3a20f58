"""Compose the roles of one process: REST, public gRPC, worker gRPC, lease sweeper and loader."""

from __future__ import annotations

import asyncio
import functools
import gc
import ipaddress
import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from grpclib.client import Channel

from model_manager.api.draining import DrainingServer
from model_manager.api.grpc import InFlight, ModelsServicer, WorkerServicer, build_server
from model_manager.api.rest import RestApi
from model_manager.config import Config, ConfigError
from model_manager.core import ids
from model_manager.core.errors import ServiceError
from model_manager.core.identity import DEFAULT_WORKER_IDENTITY, Identity
from model_manager.loader.probe import SourceProbe
from model_manager.loader.runner import run_loader
from model_manager.loader.worker_api import WorkerApi
from model_manager.objectstore.base import UnconfiguredStore
from model_manager.objectstore.factory import open_store
from model_manager.oci.auth import Logins
from model_manager.oci.push import ModelPusher, registry_session
from model_manager.proto.llmariner.models.server.v1 import ModelsWorkerServiceStub
from model_manager.service import stats
from model_manager.service.auth import Api, Authenticator, Credentials
from model_manager.service.context import ServiceContext
from model_manager.service.health import Health
from model_manager.service.housekeeping import run_housekeeping
from model_manager.service.models import ModelsService
from model_manager.service.pushes import PushService
from model_manager.service.worker import WorkerService
from model_manager.store.database import Database, create_database_if_missing
from model_manager.store.migrate import check_schema, migrate

log = logging.getLogger(__name__)

ROLES = ("all", "server", "loader")
# llmariner's name for the variable that holds a cluster's worker key.
REGISTRATION_KEY_ENV = "LLMO_CLUSTER_REGISTRATION_KEY"
DRAIN_SECONDS = 10.0
LINGER_SECONDS = 2.0


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def holder_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


async def open_database(config: Config, apply_migrations: bool = False) -> Database:
    """The configured database, created if asked and missing, and migrated (always for SQLite, `migrate` and
    `database.autoMigrate`) or else checked to be at this version's schema."""
    if config.database is not None and config.database.create_database:
        await create_database_if_missing(config.database)
    db = Database.from_config(config)
    if apply_migrations or config.database is None or config.database.auto_migrate:
        await migrate(db)
    else:
        try:
            await check_schema(db)
        except BaseException:
            await db.close()
            raise
    return db


@dataclass
class Server:
    """The serving half: one database, one service context, three listeners."""

    config: Config
    db: Database
    ctx: ServiceContext
    models: ModelsService
    worker: WorkerServicer
    inflight: InFlight = field(default_factory=InFlight)
    _runner: web.AppRunner | None = None
    _grpc: list[DrainingServer] = field(default_factory=list)

    auth: Authenticator | None = None
    probe: SourceProbe | None = None
    pushes: PushService | None = None
    registry_http: aiohttp.ClientSession | None = None

    @classmethod
    async def create(cls, config: Config) -> Server:
        db = await open_database(config)
        ctx = ServiceContext.from_config(config, db, open_store(config.object_store))
        auth = Authenticator(db, config.auth.enable, config.auth.key_cache_ttl)
        inflight = InFlight()
        worker = WorkerServicer(WorkerService(ctx), inflight, auth, await _in_process_loader_identity(config, auth))
        # CreateModel asks a base model's source with the loader's own lookups before accepting it.
        probe = SourceProbe(config, config.loading.check_source_timeout) if config.loading.check_source else None
        try:
            logins = Logins(config.oci)
        except ConfigError:
            await db.close()
            raise
        # Pushes read the object store: a server without one refuses them.
        http = None if isinstance(ctx.objects, UnconfiguredStore) else registry_session()
        pusher = ModelPusher(http, config.oci, logins, ctx.objects.read) if http is not None else None
        pushes = PushService(ctx, pusher, config.oci.pushes_at_once)
        return cls(
            config,
            db,
            ctx,
            ModelsService(ctx, probe),
            worker,
            inflight,
            auth=auth,
            probe=probe,
            pushes=pushes,
            registry_http=http,
        )

    async def housekeeping(self, stop: asyncio.Event) -> None:
        leases = self.worker.service.leases
        jobs = [("lease sweep", leases.expire), ("file removal", self.models.removals.retry_pending)]
        await run_housekeeping(jobs, leases.interval, stop)

    async def start(self) -> None:
        models = self.models
        assert self.auth is not None
        rest = RestApi(
            models,
            Health(self.ctx).ready,
            self.auth,
            self.config.http,
            self.config.limits,
            refresh_metrics=functools.partial(stats.refresh, self.ctx),
            access_log=self.config.logging.requests,
            pushes=self.pushes,
        )
        self._runner = web.AppRunner(
            rest.app(),
            shutdown_timeout=DRAIN_SECONDS,
            access_log=None,
            # aiohttp arms this when a connection opens and after each response, so it also closes connections
            # that never complete their headers.
            keepalive_timeout=self.config.http.idle_timeout,
            # How long to keep reading an unwanted body after answering (so the client can read the answer).
            lingering_time=LINGER_SECONDS,
        )
        await self._runner.setup()
        http_host, grpc_host, worker_host = self.config.listen_hosts()
        await web.TCPSite(self._runner, host=http_host or None, port=self.config.http_port).start()
        max_request = self.config.limits.grpc_message_bytes
        public_servicer = ModelsServicer(models, self.inflight, self.auth, self.pushes)
        public_servicer.access_log = self.worker.access_log = self.config.logging.requests
        public = build_server(public_servicer, with_health=True, max_request_bytes=max_request)
        await public.start(grpc_host or None, self.config.grpc_port)
        worker = build_server(self.worker, with_health=False, max_request_bytes=max_request)
        await worker.start(worker_host or None, self.config.worker_grpc_port)
        exposed = [h for h in (http_host, grpc_host, worker_host) if not _is_loopback(h)]
        if exposed and not self.config.auth.enable:
            log.warning(
                "serving WITHOUT authentication on %s: anyone who can reach these ports can read, change and delete "
                "models (set auth.enable: true, or bindAddress: 127.0.0.1, or keep the ports on a private network)",
                ", ".join(sorted({h or "every address" for h in exposed})),
            )
        self._grpc = [public, worker]
        log.info(
            "serving REST on :%d, gRPC on :%d, worker gRPC on :%d",
            self.config.http_port,
            self.config.grpc_port,
            self.config.worker_grpc_port,
        )

    async def stop(self) -> None:
        # No new connections; watch streams end (with UNAVAILABLE: watch again elsewhere); in-flight calls finish
        # (up to DRAIN_SECONDS); then every connection closes, so no client waits on a call that was cut off.
        for server in self._grpc:
            server.stop_accepting()
        if self._runner is not None:
            for site in list(self._runner.sites):
                await site.stop()
        self.ctx.changes.close()
        if not await self.inflight.wait_idle(DRAIN_SECONDS):
            log.warning("%d gRPC call(s) still running at shutdown; cancelling", self.inflight.count)
        for server in self._grpc:
            await server.close_connections()
        if self._runner is not None:
            await self._runner.cleanup()
        if self.pushes is not None:
            await self.pushes.close()  # each running push is marked failed, saying how to go on
        if self.registry_http is not None:
            await self.registry_http.close()
        await self.ctx.objects.close()
        if self.probe is not None:
            await self.probe.close()
        await self.db.close()


@asynccontextmanager
async def worker_for_loader(config: Config) -> AsyncIterator[WorkerApi]:
    """Role "loader": the worker API over gRPC, or, standalone, an in-process one on the embedded SQLite."""
    if config.standalone:
        db = await open_database(config)
        ctx = ServiceContext.from_config(config, db, open_store(config.object_store))
        try:
            yield WorkerServicer(WorkerService(ctx), InFlight(), Authenticator(db, enabled=False))
        finally:
            await db.close()
        return
    host, _, port = config.loader.worker_service_addr.rpartition(":")
    channel = Channel(host or "localhost", int(port), ssl=config.loader.worker_service_tls)
    key = os.environ.get(REGISTRATION_KEY_ENV, "")
    if key and not config.loader.worker_service_tls and not _is_loopback(host or "localhost"):
        log.warning(
            "sending the worker key to %s without TLS: anyone on the path can read it (set loader.workerServiceTls)",
            host,
        )
    try:
        yield ModelsWorkerServiceStub(channel, metadata={"authorization": f"Bearer {key}"} if key else None)
    finally:
        channel.close()


async def _in_process_loader_identity(config: Config, auth: Authenticator) -> Identity:
    """Who the loader of role "all" loads for: the tenant of the worker key in LLMO_CLUSTER_REGISTRATION_KEY when
    auth is on and one is set, else the default tenant. It calls the worker service in process, so the key is
    checked once here rather than on every call."""
    key = os.environ.get(REGISTRATION_KEY_ENV, "")
    if not config.auth.enable or not key:
        return DEFAULT_WORKER_IDENTITY
    try:
        return await auth.authenticate(Credentials(f"Bearer {key}"), Api.WORKER)
    except ServiceError as e:
        raise ConfigError(f"{REGISTRATION_KEY_ENV}: {e.message}") from e


async def loader_role(config: Config, stop: asyncio.Event) -> None:
    store = open_store(config.object_store)
    try:
        async with worker_for_loader(config) as worker:
            await run_loader(config, worker, store, holder_name(), stop)
    finally:
        await store.close()
    stop.set()  # runOnce finished: the process is done


@asynccontextmanager
async def _first_config_error() -> AsyncIterator[None]:
    """A task that stops on a setting to fix (a refused loader key) ends the process with that message, not with a
    task group's traceback."""
    try:
        yield
    except* ConfigError as group:
        raise group.exceptions[0] from None


def check_role(config: Config, role: str) -> None:
    if role not in ROLES:
        raise ConfigError(f"--role must be one of {', '.join(ROLES)}, got {role!r}")
    if role != "loader" and ids.is_within(config.object_store.path_prefix, ids.TENANTS_ROOT):
        # The server's prefix is the default tenant's; tenants/ holds every other tenant's area.
        raise ConfigError(f"objectStore.s3.pathPrefix: must not lie in {ids.TENANTS_ROOT!r}, the other tenants' root")
    if role == "loader":
        if isinstance(open_store(config.object_store), UnconfiguredStore):
            raise ConfigError("objectStore.s3.bucket: required for the loader")
        if config.auth.enable and not config.standalone and not os.environ.get(REGISTRATION_KEY_ENV):
            raise ConfigError(
                f"{REGISTRATION_KEY_ENV}: required for --role loader when auth.enable is true (a worker key, made "
                "with `model-manager keys create --role worker`)"
            )
        if not config.standalone and not config.loader.worker_service_addr:
            # Its form (host:port) was checked when the config was read.
            raise ConfigError("loader.workerServiceAddr: required for --role loader (or set debug.standalone)")


async def run(config: Config, role: str, stop: asyncio.Event) -> None:
    check_role(config, role)
    server = await Server.create(config) if role in ("all", "server") else None
    try:
        if server is not None:
            await server.start()
        # What start-up built (modules, descriptors, compiled statements) lives as long as the process: moved out
        # of the collector's reach, so a full collection walks only what requests allocate. Without this, those
        # collections paused the event loop for tens of milliseconds and set the hot paths' p99.
        gc.freeze()
        async with _first_config_error(), asyncio.TaskGroup() as tg:
            if server is not None:
                tg.create_task(server.housekeeping(stop))
            if role == "loader":
                tg.create_task(loader_role(config, stop))
            elif server is not None and config.loader.enable:
                if isinstance(server.ctx.objects, UnconfiguredStore):
                    log.warning("in-process loader not started: %s", server.ctx.objects.reason)
                else:
                    tg.create_task(run_loader(config, server.worker, server.ctx.objects, holder_name(), stop))
            await stop.wait()
            if config.graceful_shutdown_delay and server is not None:
                log.info("shutting down in %.1fs (gracefulShutdownDelay)", config.graceful_shutdown_delay)
                await asyncio.sleep(config.graceful_shutdown_delay)
    finally:
        if server is not None:
            await server.stop()
    log.info("stopped")
