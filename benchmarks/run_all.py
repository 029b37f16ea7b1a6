"""Run every benchmark in turn (``make bench``); each prints its figures with its peers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
BENCHMARKS = [
    "delivery.py", "http_load.py", "search.py", "relevance.py", "classify.py", "outreach.py",
]

if __name__ == "__main__":
    failed = 0
    for name in BENCHMARKS:
        if not (HERE / name).exists():
            continue
        print(f"== {name}", flush=True)
        failed += subprocess.run([sys.executable, str(HERE / name), *sys.argv[1:]]).returncode != 0
    sys.exit(1 if failed else 0)
