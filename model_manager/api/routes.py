"""The REST route table: the one list the server registers its routes from and the OpenAPI document is made from.

Paths are written as OpenAPI writes them. A path parameter may hold "/" (model ids like `org/name`); an action on a
model is a suffix after the id (`{id}:activate`), as in Google's API conventions that llmariner follows.
"""

from __future__ import annotations

from dataclasses import dataclass

import betterproto2

from model_manager.proto.llmariner.models.server import v1 as pb


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: str  # the RestApi method that serves it
    summary: str
    query: type[betterproto2.Message] | None = None  # scalar fields read from the query string
    body: type[betterproto2.Message] | None = None  # the JSON request body
    response: type[betterproto2.Message] | None = None  # None: a small JSON object of its own
    open: bool = False  # served without an API key when auth is on (health checks and metrics only)
    media: str = "application/json"  # what a 200 answer is

    @property
    def action(self) -> str:
        """The verb after the last ":" of the path (`activate`), or "" for a plain path."""
        tail = self.path.rsplit("/", 1)[-1]
        return tail.rpartition(":")[2] if "}:" in tail else ""


ROUTES: tuple[Route, ...] = (
    Route("GET", "/healthz", "healthz", "the process is up", open=True),
    Route("GET", "/readyz", "readyz", "the database answers", open=True),
    Route("GET", "/openapi.json", "openapi", "this document"),
    # Prometheus scrapes without a key, as probes ask the health checks.
    Route("GET", "/metrics", "metrics", "Prometheus metrics (text format)", open=True, media="text/plain"),
    Route(
        "GET", "/v1/models", "list_models", "list models", query=pb.ListModelsRequest, response=pb.ListModelsResponse
    ),
    Route("POST", "/v1/models", "create_model", "request a model", body=pb.CreateModelRequest, response=pb.Model),
    Route("GET", "/v1/models/{id}", "get_model", "get a model", query=pb.GetModelRequest, response=pb.Model),
    Route("DELETE", "/v1/models/{id}", "delete_model", "delete a model", response=pb.DeleteModelResponse),
    Route(
        "PATCH",
        "/v1/models/{id}",
        "update_model",
        "update a model's config",
        body=pb.UpdateModelRequest,
        response=pb.Model,
    ),
    Route(
        "POST",
        "/v1/models/{id}:retry",
        "retry_model",
        "load a failed model again, with a fresh set of attempts",
        response=pb.Model,
    ),
    Route(
        "GET",
        "/v1/models/{id}:watch",
        "watch_model",
        "follow a model's load: the model now and at each change, one JSON document per line, until it ends",
        query=pb.WatchModelRequest,
        response=pb.Model,
        media="application/x-ndjson",
    ),
    Route("POST", "/v1/models/{id}:activate", "activate_model", "activate a model", response=pb.ActivateModelResponse),
    Route("GET", "/v1/aliases", "list_aliases", "list the aliases the caller sees", response=pb.ListAliasesResponse),
    Route(
        "PUT",
        "/v1/aliases/{name}",
        "set_alias",
        "create an alias, or point it at another model (one atomic change)",
        body=pb.SetAliasRequest,
        response=pb.Alias,
    ),
    Route("GET", "/v1/aliases/{name}", "get_alias", "an alias, the model it names and its history", response=pb.Alias),
    Route("DELETE", "/v1/aliases/{name}", "delete_alias", "delete an alias", response=pb.DeleteAliasResponse),
    Route(
        "POST",
        "/v1/models/{id}:deactivate",
        "deactivate_model",
        "deactivate a model",
        response=pb.DeactivateModelResponse,
    ),
    Route(
        "POST",
        "/v1/models/{id}:push",
        "push_model",
        "push a loaded model to an OCI registry as a ModelPack artifact (runs in the background)",
        body=pb.PushModelRequest,
        response=pb.ModelPush,
    ),
    Route(
        "GET",
        "/v1/model_pushes",
        "list_model_pushes",
        "the pushes the caller sees, newest first",
        query=pb.ListModelPushesRequest,
        response=pb.ListModelPushesResponse,
    ),
    Route("GET", "/v1/model_pushes/{id}", "get_model_push", "a push: its progress and outcome", response=pb.ModelPush),
)
