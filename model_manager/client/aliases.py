"""`model-manager aliases set|get|list|delete`: aliases on a running server, over REST, as people and scripts use
them (a table or a line by default, the API's JSON with --json)."""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.parse
from typing import Any, TextIO

from model_manager.client.cli import DEFAULT_URL, ApiError, Client


def add_parser(sub: Any) -> None:
    aliases = sub.add_parser("aliases", help="stable names for models: set, re-point, show and delete (REST)")
    aliases.add_argument("--server", default=os.environ.get("MODEL_MANAGER_URL", DEFAULT_URL), help="REST URL")
    verbs = aliases.add_subparsers(dest="verb", required=True)
    put = verbs.add_parser("set", help="create an alias or point it at another model (one atomic change)")
    put.add_argument("name")
    put.add_argument("model_id", metavar="model", help="the model's id")
    put.add_argument("--project-scoped", action="store_true", help="an alias of your project (writers may)")
    get = verbs.add_parser("get", help="the model an alias names, and its history")
    get.add_argument("name")
    listing = verbs.add_parser("list", help="the aliases you can see")
    delete = verbs.add_parser("delete", help="delete an alias")
    delete.add_argument("name")
    for p in (put, get, listing):
        p.add_argument("--json", action="store_true", help="the API's JSON")


def run(args: Any, out: TextIO = sys.stdout) -> int:
    """Serve one `aliases` command; raises ApiError (exit 1)."""
    client = Client(args.server, os.environ.get("MODEL_MANAGER_API_KEY") or None)
    try:
        return _run(client, args, out)
    except (TypeError, KeyError, AttributeError, ValueError) as e:
        raise ApiError(f"{args.server} answered with a document the Models API does not describe ({e!r:.200})") from e


def _run(client: Client, args: Any, out: TextIO) -> int:
    path = f"/v1/aliases/{urllib.parse.quote(args.name, safe='')}" if hasattr(args, "name") else "/v1/aliases"
    if args.verb == "set":
        alias = client.call("PUT", path, {"model_id": args.model_id, "is_project_scoped": args.project_scoped})
        if args.json:
            out.write(json.dumps(alias, indent=2) + "\n")
            return 0
        history = alias.get("history") or []
        before = history[-1].get("from_model_id") if history else ""
        out.write(f"{alias['name']} -> {alias['model_id']}" + (f" (was {before})" if before else " (new)") + "\n")
    elif args.verb == "get":
        alias = client.call("GET", path)
        if args.json:
            out.write(json.dumps(alias, indent=2) + "\n")
            return 0
        out.write(f"{alias['name']} -> {alias['model_id']}  ({_scope(alias)})\n\nHISTORY\n")
        for change in alias.get("history") or []:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(int(change.get("changed_at", 0))))
            was = change.get("from_model_id") or "(created)"
            by = change.get("changed_by") or "-"
            out.write(f"  {when}  {was} -> {change.get('to_model_id')}  by {by}\n")
    elif args.verb == "list":
        found = client.call("GET", path)
        if args.json:
            out.write(json.dumps(found, indent=2) + "\n")
            return 0
        rows = [("NAME", "MODEL", "SCOPE")] + [(a["name"], a["model_id"], _scope(a)) for a in found.get("data", [])]
        widths = [max(len(r[i]) for r in rows) for i in range(2)]
        for r in rows:
            out.write(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]}\n")
    else:
        client.call("DELETE", path)
        out.write(f"{args.name}: deleted\n")
    return 0


def _scope(alias: dict[str, Any]) -> str:
    project = alias.get("project_id") or ""
    return f"project {project}" if project else "tenant"
