"""The process's Prometheus metrics, defined once; every layer that has something to count imports them from here.

Served at `GET /metrics` on the REST port (api/rest.py). Gauges that describe the catalogue or the database pool
are set when the endpoint is scraped, so they cost nothing between scrapes.
"""

from __future__ import annotations

import functools
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

# Requests of every front: api is rest, grpc (public port) or worker (worker port); method is the route
# ("GET /v1/models/{id}") or the gRPC method path; code the HTTP status or the gRPC status name.
REQUESTS = Counter("model_manager_requests_total", "Requests served", ["api", "method", "code"])
LATENCY = Histogram(
    "model_manager_request_duration_seconds",
    "Time to serve a request",
    ["api", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


@functools.lru_cache(maxsize=4096)
def _request_children(api: str, method: str, code: str) -> tuple[Any, Any]:
    # A labels() lookup builds and checks its label tuple on every call; the pairs a server sees are few.
    return REQUESTS.labels(api, method, code), LATENCY.labels(api, method)


def observe_request(api: str, method: str, code: str, seconds: float) -> None:
    """Count one request of `api` and its latency."""
    count, latency = _request_children(api, method, code)
    count.inc()
    latency.observe(seconds)


# Answers of the read paths served from the response cache ("hit") or built ("miss"): writes to other models
# leave an answer in place, so misses follow the writes to the models asked for.
CACHE = Counter("model_manager_response_cache_total", "Read answers served from the cache or built", ["result"])
CACHE_HITS, CACHE_MISSES = CACHE.labels("hit"), CACHE.labels("miss")

MODELS = Gauge("model_manager_models", "Models in the catalogue", ["kind", "loading_status"])
DB_CONNECTIONS_IN_USE = Gauge("model_manager_db_connections_in_use", "Database connections checked out of the pool")

# Loads as the server sees them, whichever loader does the work: claimed, completed, failed for good, or given
# back for another attempt.
LOADS = Counter("model_manager_loads_total", "Model loads by outcome", ["outcome"])
LEASE_EVENTS = Counter(
    "model_manager_lease_events_total",
    "Loader leases that expired (the model was given back) or were taken over (a stale loader was refused)",
    ["event"],
)

# Counted by the loader that moves the bytes (role all or loader).
BYTES_TRANSFERRED = Counter(
    "model_manager_loader_bytes_total",
    "Bytes copied into the object store, by source (a retried file counts again)",
    ["source"],
)

# Pushes to OCI registries, counted by the server that runs them: outcome succeeded or failed; bytes sent (blobs the
# registry had are not counted).
PUSHES = Counter("model_manager_pushes_total", "Pushes of models to OCI registries by outcome", ["outcome"])
PUSHED_BYTES = Counter("model_manager_pushed_bytes_total", "Bytes sent to OCI registries by pushes")
