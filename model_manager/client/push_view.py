"""What a person following or listing pushes sees: the load's progress bar while one runs, a line when it ends,
a table of pushes."""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable
from typing import Any, TextIO

from model_manager.client.progress import LOADING, LoadView, short, write_columns
from model_manager.core.units import human_bytes, human_seconds

PUSHED, PUSH_FAILED = "PUSH_STATUS_SUCCEEDED", "PUSH_STATUS_FAILED"
POLL_SECONDS = 0.5


class PushFailed(Exception):
    """The push ended FAILED; the message says why."""


def push_text(push: dict[str, Any]) -> str:
    status = short(push.get("status", ""), "PUSH_STATUS_")
    line = f"{push.get('model_id')}: {status} to {push.get('destination')} (push {push.get('id')})"
    if push.get("status") == PUSHED:
        line += f", manifest {push.get('manifest_digest')}"
    if push.get("status") == PUSH_FAILED:
        line += f": {push.get('failure_reason')}"
    return line


def follow_push(fetch: Callable[[str], dict[str, Any]], push: dict[str, Any], out: TextIO) -> dict[str, Any]:
    """Poll a push (`fetch(path)` answers a GET) until it ends; the pushed document, or PushFailed with the reason."""
    view = LoadView(out, verb="pushing")
    while True:
        model_id, status = push.get("model_id", ""), push.get("status")
        total, skipped = int(push.get("bytes_total", 0)), int(push.get("bytes_skipped", 0))
        if status == PUSHED:
            took = human_seconds(view.elapsed())
            there = f" ({human_bytes(skipped)} of it in the registry already)" if skipped else ""
            view.finish(
                f"{model_id}: pushed {human_bytes(total)} in {push.get('files_total', 0)} files{there} after {took}\n"
                f"{push.get('destination')}@{push.get('manifest_digest')}"
            )
            return push
        if status == PUSH_FAILED:
            view.finish(None)
            raise PushFailed(f"{model_id}: push to {push.get('destination')} failed: {push.get('failure_reason')}")
        progress = {k: push.get(k, 0) for k in ("bytes_done", "files_done", "files_total")}
        view.show({"id": model_id, "loading_status": LOADING, "loading_progress": {**progress, "bytes_total": total}})
        time.sleep(POLL_SECONDS)
        push = fetch(f"/v1/model_pushes/{urllib.parse.quote(push['id'], safe='')}")


def pushes_table(pushes: list[dict[str, Any]], out: TextIO) -> None:
    rows = [
        (
            p.get("id", ""),
            p.get("model_id", ""),
            p.get("destination", ""),
            human_bytes(int(p.get("bytes_total", 0))),
            time.strftime("%Y-%m-%d %H:%M", time.localtime(int(p.get("created_at", 0)))),
            short(p.get("status", ""), "PUSH_STATUS_")
            + (f": {p['failure_reason']}" if p.get("status") == PUSH_FAILED else ""),
        )
        for p in pushes
    ]
    write_columns(("ID", "MODEL", "DESTINATION", "SIZE", "STARTED", "STATUS"), rows, out)
