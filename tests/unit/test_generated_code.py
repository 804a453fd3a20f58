"""The committed betterproto2 code is what `make proto` generates from the committed .proto."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GEN = ROOT / "model_manager" / "proto"


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{ROOT / 'protos'}",
            f"--python_betterproto2_out={tmp_path}",
            "--python_betterproto2_opt=client_generation=async,server_generation=async,google_protobuf_descriptors",
            "llmariner/models/server/v1/model_manager_service.proto",
        ],
        check=True,
        env=env,
        capture_output=True,
        cwd=ROOT,
    )
    fresh, committed = _files(tmp_path), _files(GEN)
    assert sorted(fresh) == sorted(committed), "run `make proto` and commit the result"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"stale generated files {stale}: run `make proto` and commit the result"
