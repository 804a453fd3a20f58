"""One GGUF conversion in a process of its own, so that its peak RSS is its own: `ours` (the loader's streamed
conversion through a local store) or `whole` (the same tensors converted whole, all held, then written: what a
script using the gguf package directly does). Prints JSON: seconds, peak RSS, size and sha256 of the file."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import time
from pathlib import Path

from model_manager.core.files import StoredFile
from model_manager.loader.convert import tensors
from model_manager.loader.convert.run import Conversion
from model_manager.objectstore.local import LocalStore

PREFIX = "models/base/bench"


async def ours(conversion: Conversion) -> None:
    await conversion.write(await conversion.prepare())


async def whole(conversion: Conversion, out: Path) -> None:
    stream = await conversion.prepare()
    held = []
    for planned in stream.planned:
        if planned.values is not None:
            values = planned.values
        else:
            ref = planned.ref
            assert ref is not None
            raw = await conversion.read(ref.file, ref.start, ref.nbytes)
            values = tensors.decode(raw, ref.dtype, ref.shape)
            if planned.permute_heads:
                values = tensors.permute_qk(values, planned.permute_heads)
        held.append(tensors.encode(values, planned.qtype))
    with out.open("wb") as f:
        f.write(stream.header)
        for data in held:
            f.write(bytes(-f.tell() % stream.alignment))
            f.write(data)
        f.write(bytes(-f.tell() % stream.alignment))


def main() -> None:
    mode, root, gguf_type = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    directory = root / PREFIX
    files = [StoredFile(p.name, p.stat().st_size, "") for p in sorted(directory.iterdir()) if "gguf" not in p.name]
    conversion = Conversion(LocalStore(root), PREFIX, files, gguf_type, f"bench-{gguf_type}")
    out = root / conversion.key
    out.unlink(missing_ok=True)
    start = time.perf_counter()
    asyncio.run(ours(conversion) if mode == "ours" else whole(conversion, out))
    seconds = time.perf_counter() - start
    peak = peak_rss_mib()  # before the file is hashed, which reads it
    digest = hashlib.sha256()
    with out.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    print(json.dumps({"seconds": seconds, "rss_mib": peak, "sha256": digest.hexdigest()}))


def peak_rss_mib() -> float:
    """This process's peak resident set (VmHWM; unlike ru_maxrss it does not carry the parent's over a fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


if __name__ == "__main__":
    main()
