"""Run every benchmark in turn (``make bench``), then write their results into
``docs/performance.md`` (``benchmarks/report.py``).

Usage: python benchmarks/run_all.py [--quick] [--only delivery.py ...]

Each benchmark prints its figures with its peers and writes ``benchmarks/results/<name>.json``.
``--quick`` runs each at a small size (a check that they work, not figures to publish).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
BENCHMARKS = [
    "delivery.py", "http_load.py", "scale_out.py", "search.py", "migrate.py", "relevance.py",
    "classify.py", "outreach.py", "memory.py",
]

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, to check they run")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, help="these benchmarks only")
    args = parser.parse_args()
    failed = []
    for name in args.only or BENCHMARKS:
        print(f"== {name}", flush=True)
        started = time.monotonic()
        command = [sys.executable, str(HERE / name), *(["--quick"] if args.quick else [])]
        if subprocess.run(command).returncode != 0:
            failed.append(name)
        print(f"== {name}: {time.monotonic() - started:.0f} s", flush=True)
    subprocess.run([sys.executable, str(HERE / "report.py")], check=True)
    if failed:
        print("failed: " + ", ".join(failed))
    sys.exit(1 if failed else 0)
