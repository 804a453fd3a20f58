"""GGUF conversion: MiB/s of source weights and peak RSS, the loader's streamed conversion against the gguf package
used whole (every tensor converted and held, then written), same checkpoint, same bytes out, alternating."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.common import ROOT, Report
from bench.conversion_child import PREFIX
from tests.checkpoints import Checkpoint


def _child(mode: str, root: Path, gguf_type: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.conversion_child", mode, str(root), gguf_type],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run(report: Report, tmp: Path, checkpoint: Checkpoint | None = None, rounds: int = 3) -> None:
    ck = checkpoint or Checkpoint(hidden=1024, heads=16, kv_heads=4, feed_forward=4096, layers=12, vocab=32000)
    root = tmp / "convert"
    directory = ck.write(root / PREFIX)
    weights = sum(p.stat().st_size for p in directory.glob("*.safetensors")) / 2**20
    for gguf_type in ("q8_0", "f16"):
        runs: dict[str, list[dict[str, Any]]] = {"ours": [], "whole": []}
        for _ in range(rounds):
            for mode in ("ours", "whole"):
                runs[mode].append(_child(mode, root, gguf_type))
        if {r["sha256"] for r in runs["ours"] + runs["whole"]} != {runs["ours"][0]["sha256"]}:
            raise SystemExit(f"conversion to {gguf_type}: the two ways wrote different files")
        ours_s = statistics.median(r["seconds"] for r in runs["ours"])
        whole_s = statistics.median(r["seconds"] for r in runs["whole"])
        ours_rss = statistics.median(r["rss_mib"] for r in runs["ours"])
        whole_rss = statistics.median(r["rss_mib"] for r in runs["whole"])
        name = f"GGUF {gguf_type} of a {weights:.0f} MiB bf16 Llama"
        report.add(
            name,
            "MiB/s of source weights",
            f"{weights / ours_s:.0f}",
            f"{weights / whole_s:.0f} (gguf, whole tensors)",
            f"{whole_s / ours_s:.2f}x",
            ">= 0.8x",
            "yes" if whole_s / ours_s >= 0.8 else "**no**",
        )
        report.add(
            name,
            "peak RSS MiB",
            f"{ours_rss:.0f}",
            f"{whole_rss:.0f} (gguf, whole tensors)",
            f"{ours_rss / whole_rss:.2f}x",
            "< weights",
            "yes" if ours_rss < weights else "**no**",
        )
