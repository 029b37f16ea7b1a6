"""What moved between two result files of the same benchmark.

Usage: python benchmarks/compare.py benchmarks/results/http.json other/http.json [--min 5]

Prints every numeric figure present in both, with its change in per cent; figures that moved by
less than ``--min`` per cent are left out. Which direction is better depends on the figure
(requests per second up, milliseconds down), so the change is shown, not judged.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def flatten(value: Any, prefix: str = "") -> dict[str, float]:
    if isinstance(value, bool):
        return {}
    if isinstance(value, int | float):
        return {prefix: float(value)}
    if isinstance(value, dict):
        flat: dict[str, float] = {}
        for key, inner in value.items():
            flat.update(flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--min", type=float, default=0.0, help="per cent; smaller moves hidden")
    args = parser.parse_args()
    before, after = (json.loads(path.read_text()) for path in (args.before, args.after))
    if before.get("benchmark") != after.get("benchmark"):
        print(f"not the same benchmark: {before.get('benchmark')} and {after.get('benchmark')}")
        return 2
    print(f"{before['benchmark']}: {before.get('commit')} ({before.get('cpu_count')} CPUs) -> "
          f"{after.get('commit')} ({after.get('cpu_count')} CPUs)")
    old, new = flatten(before["figures"]), flatten(after["figures"])
    for name in sorted(old.keys() & new.keys()):
        change = (new[name] - old[name]) / old[name] * 100 if old[name] else float("inf")
        if abs(change) >= args.min:
            print(f"{name:<48} {old[name]:>12.2f} -> {new[name]:>12.2f}  {change:+7.1f} %")
    for name in sorted(old.keys() ^ new.keys()):
        print(f"{name:<48} only in {'before' if name in old else 'after'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
