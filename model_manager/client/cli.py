"""`model-manager models ...`: the Models API from a terminal, over REST, with `llma models`' flags.

Talks to `--server` (env MODEL_MANAGER_URL, default http://localhost:8080) with the key in MODEL_MANAGER_API_KEY.
Tables for people, `--json` for scripts. Exit codes: 0 done, 1 the API refused or the load failed, 2 bad usage.
"""

from __future__ import annotations

import functools
import http.client
import json
import math
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TextIO

from model_manager.client.progress import FAILED, LOADED, LoadView, short, status_text, write_columns
from model_manager.client.push_view import PushFailed, follow_push, push_text, pushes_table
from model_manager.core import ids
from model_manager.core.units import human_bytes, human_seconds

DEFAULT_URL = "http://localhost:8080"
SOURCES = {
    "hugging-face": "SOURCE_REPOSITORY_HUGGING_FACE",
    "ollama": "SOURCE_REPOSITORY_OLLAMA",
    "object-store": "SOURCE_REPOSITORY_OBJECT_STORE",
    "oci": "SOURCE_REPOSITORY_OCI",
}
# Longer than the server's heartbeat (15 s): a watch that says nothing for this long has lost its server.
STREAM_IDLE_SECONDS = 60.0
# A watch that loses its server this many times in a row, with no event between, gives up.
RECONNECTS = 5
UNAVAILABLE = 14  # the gRPC code of a server that is shutting down
# What the client reads of one answer, and of one watch event: far above what a server sends (a page of 1,000
# models is a few MiB), so a broken or hostile server cannot make the terminal's process grow without end.
MAX_ANSWER_BYTES = 64 * 1024 * 1024
MAX_EVENT_BYTES = 4 * 1024 * 1024


class ApiError(Exception):
    """The server's refusal (its message), or why it could not be reached, or a failed load: exit 1."""

    def __init__(self, message: str, status: int = 0, retry: bool = False) -> None:
        super().__init__(message)
        self.status = status  # the HTTP status of a refusal; 0 otherwise
        self.retry = retry  # a lost connection or a server going away: asking again (elsewhere) may work


class UsageError(Exception):
    """A command that cannot be sent as given: exit 2."""


def add_parser(sub: Any) -> None:
    models = sub.add_parser("models", help="list, create, watch and change models on a server (REST)")
    models.add_argument("--server", default=os.environ.get("MODEL_MANAGER_URL", DEFAULT_URL), help="REST URL")
    verbs = models.add_subparsers(dest="verb", required=True)
    listing = verbs.add_parser("list", help="the models you can see, loading ones included")
    listing.add_argument("--json", action="store_true", help="the API's JSON instead of a table")
    listing.add_argument("--format", help="only this format: gguf, hugging-face, ollama, nvidia-triton")
    listing.add_argument("--architecture", help="only this architecture (metadata), e.g. llama")
    listing.add_argument("--quantization", help="only this quantization (metadata), e.g. q4_0")
    get = verbs.add_parser("get", help="one model")
    get.add_argument("id")
    get.add_argument("--json", action="store_true", help="the API's JSON instead of a summary")
    create = verbs.add_parser("create", help="request a model").add_subparsers(dest="kind", required=True)
    base = create.add_parser("base", help="an open model from Hugging Face, Ollama or the object store")
    base.add_argument("id", help="e.g. google/gemma-2b, gemma:2b, registry.local/models/gemma:2b (oci)")
    base.add_argument("--source-repository", required=True, choices=list(SOURCES))
    base.add_argument("--project-scoped", action="store_true", help="only for your project (writers may do this)")
    base.add_argument(
        "--gguf",
        choices=ids.GGUF_TYPES,
        help="also convert it to a GGUF file of this type, registered as the model <id>-<type>",
    )
    for flag, what in (("--include", "store only files matching"), ("--exclude", "do not store files matching")):
        base.add_argument(
            flag,
            action="append",
            default=[],
            metavar="GLOB",
            help=f"{what} this glob over repo-relative paths (repeatable; replaces the default selection)",
        )
    base.add_argument(
        "--allow-pickle",
        action="store_true",
        help="store pickle-based weights (.bin, .pt, .pth, .ckpt, .pkl) after an allowlist scan of every pickle",
    )
    fine = create.add_parser("fine-tuned", help="a fine-tuned model of a loaded base model")
    fine.add_argument("--base-model-id", required=True)
    fine.add_argument("--suffix", required=True)
    fine.add_argument("--model-file-location", required=True, help="s3://bucket/path or a Hugging Face repo")
    fine.add_argument("--source-repository", default="object-store", choices=["object-store", "hugging-face"])
    for p in (base, fine):
        p.add_argument("--wait", action="store_true", help="follow the load until it succeeds or fails")
        p.add_argument("--json", action="store_true", help="the API's JSON instead of a summary")
    update = verbs.add_parser("update", help="change a model's config")
    update.add_argument("id")
    update.add_argument("--replicas", type=int)
    update.add_argument("--gpu", type=int, help="GPUs per replica")
    update.add_argument("--extra-args", nargs="*", help="the inference engine's extra arguments (replaces them)")
    update.add_argument("--disable-on-demand-allocation", action="store_true")
    update.add_argument("--enable-on-demand-allocation", action="store_true")
    for name, text in (("delete", "delete a model"), ("activate", "keep a model loaded"), ("deactivate", "unload it")):
        verbs.add_parser(name, help=text).add_argument("id")
    retry = verbs.add_parser("retry", help="load a failed model again, with a fresh set of attempts")
    retry.add_argument("id")
    retry.add_argument("--wait", action="store_true", help="follow the load until it succeeds or fails")
    push = verbs.add_parser("push", help="copy a loaded model to an OCI registry, as a CNCF ModelPack artifact")
    push.add_argument("id")
    push.add_argument("destination", help="oci://HOST[:PORT]/REPOSITORY[:TAG] (the tag defaults to latest)")
    pushed = verbs.add_parser("push-status", help="a push's progress and outcome")
    pushed.add_argument("push_id")
    for p in (push, pushed):
        p.add_argument("--wait", action="store_true", help="follow the push until it succeeds (0) or fails (1)")
        p.add_argument("--json", action="store_true", help="the API's JSON (with --wait: progress on stderr)")
    pushes = verbs.add_parser("pushes", help="the pushes you can see, newest first")
    pushes.add_argument("--model", help="only this model's")
    pushes.add_argument("--json", action="store_true", help="the API's JSON instead of a table")
    wait = verbs.add_parser("wait", help="follow a model's load until it succeeds (0) or fails (1)")
    wait.add_argument("id")
    wait.add_argument("--timeout", type=float, default=0, help="give up after this many seconds (0: never)")
    wait.add_argument("--json", action="store_true", help="the loaded model's JSON on stdout, progress on stderr")


@dataclass
class Client:
    server: str
    key: str | None = None

    def _request(self, method: str, path: str, body: Any = None, query: dict[str, str] | None = None) -> Any:
        url = self.server.rstrip("/") + path + ("?" + urllib.parse.urlencode(query) if query else "")
        headers = {"Content-Type": "application/json"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        data = json.dumps(body).encode() if body is not None else None
        return urllib.request.Request(url, data=data, method=method, headers=headers)

    def _open(self, request: urllib.request.Request, timeout: float) -> http.client.HTTPResponse:
        try:
            response: http.client.HTTPResponse = urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as e:
            # 502-504: a database outage, a replica going away behind a proxy; asking again may reach one that works.
            raise ApiError(_refusal(e), e.code, retry=e.code in (502, 503, 504)) from e
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise ApiError(f"cannot reach {self.server}: {reason}", retry=True) from e
        return response

    def call(self, method: str, path: str, body: Any = None, query: dict[str, str] | None = None) -> dict[str, Any]:
        with self._open(self._request(method, path, body, query), timeout=30) as response:
            data = response.read(MAX_ANSWER_BYTES + 1)
        if len(data) > MAX_ANSWER_BYTES:
            raise ApiError(f"{self.server} answered more than {human_bytes(MAX_ANSWER_BYTES)}; not reading it")
        return _document(data or b"{}", f"the answer of {self.server}")

    def watch(self, model_id: str, timeout_seconds: int = 0) -> Iterator[dict[str, Any]]:
        """The model documents WatchModel streams (GET /v1/models/{id}:watch), one per change."""
        quoted = urllib.parse.quote(model_id, safe="/:")
        query = {"timeout_seconds": str(timeout_seconds)} if timeout_seconds else None
        with self._open(self._request("GET", f"/v1/models/{quoted}:watch", query=query), STREAM_IDLE_SECONDS) as r:
            while True:
                try:
                    line = r.readline(MAX_EVENT_BYTES + 1)
                except (OSError, http.client.HTTPException, ValueError) as e:
                    raise ApiError(f"lost the watch stream from {self.server}: {e}", retry=True) from e
                if not line:
                    return
                if len(line) > MAX_EVENT_BYTES:
                    raise ApiError(f"{self.server} sent a watch event of more than {human_bytes(MAX_EVENT_BYTES)}")
                event = _document(line, f"a watch event from {self.server}")
                if "error" in event:  # the error that ended the stream (deleted, server shutting down)
                    raise ApiError(str(event.get("message")), retry=event.get("code") == UNAVAILABLE)
                yield event

    def model(self, model_id: str) -> dict[str, Any]:
        quoted = urllib.parse.quote(model_id, safe="/:")
        return self.call("GET", f"/v1/models/{quoted}", query={"include_loading_model": "true"})


def _document(data: bytes, what: str) -> dict[str, Any]:
    """A JSON object from the server; ApiError naming what came instead."""
    try:
        found = json.loads(data)
    except (ValueError, RecursionError) as e:  # RecursionError: nested deeper than Python's parser goes
        raise ApiError(f"{what} is not JSON ({type(e).__name__})") from e
    if not isinstance(found, dict):
        raise ApiError(f"{what} is not a JSON object (it is {type(found).__name__})")
    return found


def _refusal(e: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(e.read(MAX_EVENT_BYTES))
        message = body.get("message") or body.get("error", {}).get("message")
    except (ValueError, AttributeError, RecursionError):
        message = None
    return f"{str(message or e.reason)[:2000]} (HTTP {e.code})"


def _size(model: dict[str, Any]) -> str:
    total = sum(int(f.get("size", 0)) for f in model.get("files", []))
    return human_bytes(total) if total else "-"


def _count(n: int) -> str:
    """A parameter count as model cards write it: 22.7M, 8.0B."""
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n) if n else ""


def _age(created: int) -> str:
    seconds = max(0, int(time.time()) - int(created))
    for unit, span in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= span:
            return f"{seconds // span}{unit}"
    return f"{seconds}s"


def table(models: list[dict[str, Any]], out: TextIO) -> None:
    rows = [
        (
            m["id"],
            short(m.get("activation_status", ""), "ACTIVATION_STATUS_") or "-",
            ",".join(short(f, "MODEL_FORMAT_") for f in m.get("formats", [])) or "-",
            _size(m),
            _age(m.get("created", 0)),
            status_text(m),
        )
        for m in models
    ]
    write_columns(("ID", "ACTIVATION", "FORMATS", "SIZE", "AGE", "STATUS"), rows, out)


def _print(model: dict[str, Any], as_json: bool, out: TextIO) -> None:
    if as_json:
        out.write(json.dumps(model, indent=2) + "\n")
        return
    table([model], out)
    meta = model.get("metadata") or {}
    said = [
        ("architecture", meta.get("architecture")),
        ("parameters", _count(int(meta.get("parameter_count", 0)))),
        ("quantization", meta.get("quantization")),
        ("dtype", meta.get("dtype")),
        ("context length", meta.get("context_length")),
        ("license", meta.get("license")),
    ]
    if model.get("aliases"):
        said.insert(0, ("aliases", ", ".join(model["aliases"])))
    if meta.get("requires_remote_code"):
        said.append(("remote code", "yes: engines must trust the repo's own Python code (trust_remote_code)"))
    if any(value for _, value in said):
        out.write("\n" + "".join(f"{name.upper():<15} {value}\n" for name, value in said if value))
    skipped = meta.get("skipped_files") or []
    if skipped:
        total = sum(int(f.get("size", 0)) for f in skipped)
        out.write(f"\nNOT STORED ({len(skipped)} files, {human_bytes(total)})\n")
        rows = [(str(f.get("path")), human_bytes(int(f.get("size", 0))), str(f.get("reason", ""))) for f in skipped]
        path_w, size_w = max(len(r[0]) for r in rows), max(len(r[1]) for r in rows)
        for path, size, reason in rows:
            out.write(f"  {path:<{path_w}}  {size:>{size_w}}  {reason}\n")
    attempts = model.get("loading_attempts", [])
    if attempts:
        out.write("\nFAILED ATTEMPTS\n")
        for a in attempts:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(int(a.get("failed_at", 0))))
            out.write(f"  #{a.get('attempt')}  {when}  {a.get('reason', '')}\n")


def wait(client: Client, model_id: str, out: TextIO, timeout: float = 0) -> dict[str, Any]:
    """Follow a load through WatchModel until it ends. Returns the model once loaded; raises ApiError with the
    failure reason when the load fails, or when it is still going after `timeout` seconds (0: no limit). A lost
    stream (a server restarting, a proxy closing it) is picked up again, here or on another replica."""
    view = LoadView(out)
    deadline = time.monotonic() + timeout if timeout else None
    lost = 0
    last: dict[str, Any] = {}
    while True:
        left = math.ceil(deadline - time.monotonic()) if deadline is not None else 0
        if deadline is not None and left <= 0:
            view.finish(None)
            where = short(last.get("loading_status", ""), "MODEL_LOADING_STATUS_")
            raise ApiError(f"{model_id}: still {where} after {timeout:g} s")
        try:
            for last in client.watch(model_id, left):
                lost = 0
                model_id = last["id"]  # a Hugging Face id ("org/name") is followed to the id it loads as
                status = last.get("loading_status")
                if status == LOADED:
                    files, took = len(last.get("files", [])), human_seconds(view.elapsed())
                    view.finish(f"{model_id}: loaded, {_size(last)} in {files} files after {took}")
                    return last
                if status == FAILED:
                    view.finish(None)
                    raise ApiError(
                        f"{model_id}: loading failed: {last.get('loading_failure_reason') or 'no reason given'}"
                    )
                view.show(last)
        except ApiError as e:
            lost += 1
            if not e.retry or lost > RECONNECTS:
                view.finish(None)
                raise
            view.note(f"{model_id}: {e}; watching again")
            time.sleep(min(0.5 * 2**lost, 8.0))


def _config_update(args: Any) -> tuple[dict[str, Any], list[str]]:
    runtime: dict[str, Any] = {}
    policy: dict[str, Any] = {}
    paths: list[str] = []
    if args.replicas is not None:
        runtime["replicas"] = args.replicas
        paths.append("config.runtime_config.replicas")
    if args.gpu is not None:
        runtime["resources"] = {"gpu": args.gpu}
        paths.append("config.runtime_config.resources.gpu")
    if args.extra_args is not None:
        runtime["extra_args"] = args.extra_args
        paths.append("config.runtime_config.extra_args")
    if args.disable_on_demand_allocation or args.enable_on_demand_allocation:
        policy["enable_on_demand_allocation"] = bool(args.enable_on_demand_allocation)
        paths.append("config.cluster_allocation_policy.enable_on_demand_allocation")
    return {"runtime_config": runtime, "cluster_allocation_policy": policy}, paths


def run(args: Any, out: TextIO = sys.stdout) -> int:
    """Serve one `models` command; raises ApiError (exit 1) or UsageError (exit 2)."""
    try:
        return _run(args, out)
    except (TypeError, KeyError, AttributeError, ValueError) as e:
        # A JSON object whose fields are not of the Models API's types ("data": 5): said, not a traceback.
        raise ApiError(f"{args.server} answered with a document the Models API does not describe ({e!r:.200})") from e


def _run(args: Any, out: TextIO) -> int:
    client = Client(args.server, os.environ.get("MODEL_MANAGER_API_KEY") or None)
    verb = args.verb
    if verb == "list":
        query = {"include_loading_models": "true", "limit": "1000"}
        query |= {k: v for k in ("format", "architecture", "quantization") if (v := getattr(args, k))}
        found = client.call("GET", "/v1/models", query=query)
        if args.json:
            out.write(json.dumps(found, indent=2) + "\n")
        else:
            table(found.get("data", []), out)
    elif verb == "get":
        _print(client.model(args.id), args.json, out)
    elif verb == "create":
        if args.kind == "base":
            body = {
                "id": args.id,
                "source_repository": SOURCES[args.source_repository],
                "is_project_scoped": args.project_scoped,
            }
            if args.gguf:
                body["convert"] = {"gguf": args.gguf}
            if args.include or args.exclude or args.allow_pickle:
                body.update(include=args.include, exclude=args.exclude, allow_pickle=args.allow_pickle)
        else:
            body = {
                "is_fine_tuned_model": True,
                "base_model_id": args.base_model_id,
                "suffix": args.suffix,
                "model_file_location": args.model_file_location,
                "source_repository": SOURCES[args.source_repository],
            }
        model = client.call("POST", "/v1/models", body)
        if args.wait and args.json:
            # For scripts: the progress goes to stderr and the one document on stdout is the loaded model.
            _print(wait(client, model["id"], sys.stderr), True, out)
        else:
            _print(model, args.json, out)
            if args.wait:
                wait(client, model["id"], out)
    elif verb == "update":
        config, paths = _config_update(args)
        if not paths:
            raise UsageError(
                "models update: nothing to change; give --replicas, --gpu, --extra-args or an allocation flag"
            )
        quoted = urllib.parse.quote(args.id, safe="/:")
        body = {"model": {"config": config}, "update_mask": ",".join(paths)}
        table([client.call("PATCH", f"/v1/models/{quoted}", body)], out)
    elif verb in ("delete", "activate", "deactivate"):
        quoted = urllib.parse.quote(args.id, safe="/:")
        if verb == "delete":
            gone = client.call("DELETE", f"/v1/models/{quoted}")
            if gone.get("files_removal_pending"):
                error = gone.get("files_removal_error") or "the object store did not answer"
                out.write(f"{args.id}: deleted; its files are not removed yet ({error}); the server retries\n")
                return 0
        else:
            client.call("POST", f"/v1/models/{quoted}:{verb}")
        out.write(f"{args.id}: {verb}d\n")
    elif verb == "retry":
        quoted = urllib.parse.quote(args.id, safe="/:")
        model = client.call("POST", f"/v1/models/{quoted}:retry")
        out.write(f"{model['id']}: {status_text(model)}\n")
        if args.wait:
            wait(client, model["id"], out)
    elif verb in ("push", "push-status"):
        if verb == "push":
            quoted = urllib.parse.quote(args.id, safe="/:")
            push = client.call("POST", f"/v1/models/{quoted}:push", {"destination": args.destination})
        else:
            push = client.call("GET", f"/v1/model_pushes/{urllib.parse.quote(args.push_id, safe='')}")
        if args.wait:
            fetch = functools.partial(client.call, "GET")
            try:
                push = follow_push(fetch, push, sys.stderr if args.json else out)
            except PushFailed as e:
                raise ApiError(str(e)) from e
        if args.json:
            out.write(json.dumps(push, indent=2) + "\n")
        elif not args.wait:
            out.write(f"{push_text(push)}\n")
    elif verb == "pushes":
        query = {"model_id": args.model} if args.model else {}
        found = client.call("GET", "/v1/model_pushes", query=query)
        if args.json:
            out.write(json.dumps(found, indent=2) + "\n")
        else:
            pushes_table(found.get("data", []), out)
    elif verb == "wait":
        loaded = wait(client, args.id, sys.stderr if args.json else out, timeout=args.timeout)
        if args.json:
            _print(loaded, True, out)
    return 0
