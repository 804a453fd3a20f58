"""`make bench`: run every benchmark against its baseline in one run, print the table, write bench/results.md.

`--smoke` runs each with tiny sizes and no targets, so the test suite can keep the scripts from rotting.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

from bench import (
    auth_overhead,
    claims,
    conversion,
    hf_serving,
    hot_paths,
    loader_ceiling,
    models_in_use,
    oci_push,
    transfer,
    watchers,
)
from bench.common import ROOT, Report, machine
from tests.checkpoints import Checkpoint


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--smoke", action="store_true", help="tiny sizes, one round; for the test suite")
    benches = ["hot", "inuse", "transfer", "ceiling", "claims", "auth", "watch", "convert", "hf", "oci"]
    p.add_argument("--only", choices=benches, action="append")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    only = set(args.only or benches)
    report = Report()
    with tempfile.TemporaryDirectory(prefix="mm-bench-") as d:
        tmp = Path(d)
        if "hot" in only:
            if args.smoke:
                hot_paths.run(report, tmp, sizes=(10, 50), seconds=1, warmup=0, rounds=1)
            else:
                hot_paths.run(report, tmp)
        if "inuse" in only:
            if args.smoke:
                models_in_use.run(report, tmp, models=20, in_use=5, seconds=1, warmup=0, rounds=1)
            else:
                models_in_use.run(report, tmp)
        if "transfer" in only:
            if args.smoke:
                transfer.run(report, tmp, sizes_mib=(8,), rounds=1)
            else:
                transfer.run(report, tmp)
        if "ceiling" in only:
            if args.smoke:
                loader_ceiling.run(report, tmp, size_mib=8, rounds=1)
            else:
                loader_ceiling.run(report, tmp)
        if "claims" in only:
            if args.smoke:
                claims.run(report, models=50, rounds=1)
            else:
                claims.run(report)
        if "auth" in only:
            if args.smoke:
                auth_overhead.run(report, tmp, models=10, seconds=1, warmup=0, rounds=1)
            else:
                auth_overhead.run(report, tmp)
        if "convert" in only:
            if args.smoke:
                conversion.run(report, tmp, Checkpoint(), rounds=1)
            else:
                conversion.run(report, tmp)
        if "watch" in only:
            if args.smoke:
                watchers.run(report, tmp, clients=5, seconds=1, rounds=1)
            else:
                watchers.run(report, tmp)
        if "hf" in only:
            if args.smoke:
                hf_serving.run(report, tmp, size_mib=8, rounds=1, clients=2)
            else:
                hf_serving.run(report, tmp)
        if "oci" in only:
            if args.smoke:
                oci_push.run(report, tmp, size_mib=8, rounds=1)
            else:
                oci_push.run(report, tmp)
    print(f"{machine()}\n\n{report.table()}")
    for note in report.notes:
        print(f"- {note}")
    if not args.smoke:
        (ROOT / "bench" / "results.md").write_text(report.markdown())


if __name__ == "__main__":
    main()
