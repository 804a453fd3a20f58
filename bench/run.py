"""`make bench`: run every benchmark against its baseline in one run, print the table, write bench/results.md.

`--smoke` runs each with tiny sizes and no targets, so the test suite can keep the scripts from rotting.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

from bench import auth_overhead, claims, grpc_bench, rest_listing, transfer
from bench.common import ROOT, Report, machine


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--smoke", action="store_true", help="tiny sizes, one round; for the test suite")
    p.add_argument("--only", choices=["rest", "grpc", "transfer", "claims", "auth"], action="append")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    only = set(args.only or ["rest", "grpc", "transfer", "claims", "auth"])
    report = Report()
    with tempfile.TemporaryDirectory(prefix="mm-bench-") as d:
        tmp = Path(d)
        if "rest" in only:
            if args.smoke:
                rest_listing.run(report, tmp, sizes=(10, 50), seconds=0.5, warmup=0.1, rounds=1)
            else:
                rest_listing.run(report, tmp)
        if "grpc" in only:
            if args.smoke:
                grpc_bench.run(report, tmp, models=10, seconds=0.5, rounds=1)
            else:
                grpc_bench.run(report, tmp)
        if "transfer" in only:
            if args.smoke:
                transfer.run(report, tmp, sizes_mib=(8,), rounds=1)
            else:
                transfer.run(report, tmp)
        if "claims" in only:
            if args.smoke:
                claims.run(report, models=50, rounds=1)
            else:
                claims.run(report)
        if "auth" in only:
            if args.smoke:
                auth_overhead.run(report, tmp, models=10, seconds=0.5, warmup=0.1, rounds=1)
            else:
                auth_overhead.run(report, tmp)
    print(f"{machine()}\n\n{report.table()}")
    for note in report.notes:
        print(f"- {note}")
    if not args.smoke:
        (ROOT / "bench" / "results.md").write_text(report.markdown())


if __name__ == "__main__":
    main()
