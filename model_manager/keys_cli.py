"""`model-manager keys create|list|revoke`: manage API keys straight in the database the servers read.

The new key goes alone to stdout (so `KEY=$(model-manager keys create ...)` works); everything else to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from model_manager import app
from model_manager.config import Config
from model_manager.core.identity import DEFAULT_ORGANIZATION_ID, DEFAULT_PROJECT_ID, DEFAULT_TENANT_ID, Role
from model_manager.service.keys import KeyScope, KeyService
from model_manager.store.keys import KeyRecord


def add_parser(sub: Any) -> None:
    keys = sub.add_parser("keys", help="create, list and revoke API keys").add_subparsers(dest="keys", required=True)
    create = keys.add_parser("create", help="make a key; prints it once, on stdout")
    create.add_argument("--config", required=True, help="YAML configuration file (its database holds the keys)")
    create.add_argument("--role", required=True, choices=[r.value for r in Role], help="what the key may do")
    create.add_argument("--tenant", default=DEFAULT_TENANT_ID, help=f"tenant (default {DEFAULT_TENANT_ID})")
    create.add_argument("--organization", help=f"organization, public roles only (default {DEFAULT_ORGANIZATION_ID})")
    create.add_argument("--project", help=f"project, public roles only (default {DEFAULT_PROJECT_ID})")
    create.add_argument("--cluster", default="", help="worker keys: the cluster the key is for (a label)")
    create.add_argument("--name", default="", help="a label to recognise the key by in `keys list`")
    listing = keys.add_parser("list", help="list keys (never the keys themselves)")
    listing.add_argument("--config", required=True, help="YAML configuration file")
    listing.add_argument("--tenant", help="only this tenant's keys")
    listing.add_argument("--json", action="store_true", help="one JSON document instead of a table")
    revoke = keys.add_parser("revoke", help="revoke a key on every server within auth.keyCacheTtl")
    revoke.add_argument("--config", required=True, help="YAML configuration file")
    revoke.add_argument("key_id", help="the key's id, as `keys list` shows it")


def scope_of(args: argparse.Namespace) -> KeyScope:
    role = Role(args.role)
    if role is Role.WORKER:
        return KeyScope(
            args.tenant, role, args.organization or "", args.project or "", cluster=args.cluster, name=args.name
        )
    return KeyScope(
        args.tenant,
        role,
        args.organization or DEFAULT_ORGANIZATION_ID,
        args.project or DEFAULT_PROJECT_ID,
        cluster=args.cluster,
        name=args.name,
    )


def _scope_text(r: KeyRecord) -> str:
    if r.role == Role.WORKER:
        return f"tenant {r.tenant_id}" + (f", cluster {r.cluster}" if r.cluster else "")
    return f"tenant {r.tenant_id}, organization {r.organization_id}, project {r.project_id}"


def _time(seconds: int | None) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if seconds else ""


def _as_dict(r: KeyRecord) -> dict[str, Any]:
    return {
        "id": r.key_id,
        "tenant": r.tenant_id,
        "organization": r.organization_id,
        "project": r.project_id,
        "role": r.role,
        "cluster": r.cluster,
        "name": r.name,
        "created_at": _time(r.created_at),
        "last_used_at": _time(r.last_used_at),
        "revoked_at": _time(r.revoked_at),
    }


def _table(records: list[KeyRecord]) -> str:
    rows = [_as_dict(r) for r in records]
    fields = list(rows[0]) if rows else ["id"]
    widths = {f: max([len(f)] + [len(row[f]) for row in rows]) for f in fields}

    def line(cells: dict[str, str]) -> str:
        return "  ".join(cells[f].ljust(widths[f]) for f in fields).rstrip()

    return "\n".join([line({f: f.upper().replace("_", " ") for f in fields}), *(line(row) for row in rows)])


async def run(config: Config, args: argparse.Namespace) -> None:
    db = await app.open_database(config)
    try:
        service = KeyService(db)
        if args.keys == "create":
            key, record = await service.create(scope_of(args))
            print(key)
            print(f"created API key {record.key_id} ({record.role}; {_scope_text(record)})", file=sys.stderr)
            print("the key is shown only now: store it as a secret", file=sys.stderr)
        elif args.keys == "list":
            records = await service.list(args.tenant)
            if args.json:
                print(json.dumps([_as_dict(r) for r in records], indent=2))
            else:
                print(_table(records))
        else:
            record = await service.revoke(args.key_id)
            print(
                f"revoked API key {record.key_id} ({record.role}; {_scope_text(record)}) at {_time(record.revoked_at)}",
                file=sys.stderr,
            )
    finally:
        await db.close()
