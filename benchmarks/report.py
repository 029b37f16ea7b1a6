"""Write the benchmarks' result files into ``docs/performance.md``.

Usage: python benchmarks/report.py [--check] [--results DIR] [--doc PATH]

The document keeps its prose by hand; its tables of figures come from
``benchmarks/results/<name>.json`` only. Each table sits between two markers:

    <!-- results: delivery -->
    ...generated...
    <!-- /results -->

``results: summary`` holds every row that has a target, from every file. ``--check`` changes
nothing and exits 1 when the document differs from what the result files say, so a figure
edited by hand is caught.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
RESULTS = HERE / "results"
DOC = HERE.parent / "docs" / "performance.md"
BLOCK = re.compile(r"(<!-- results: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /results -->)",
                   re.DOTALL)


def number(value: float | None) -> str:
    if value is None:
        return ""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def verdict(row: dict[str, Any]) -> str:
    """Met, not met, or, for a target this run could not judge (see the row), not judged."""
    if row.get("met") is None:
        return "not judged" if row.get("target") else ""
    return "met" if row["met"] else "**not met**"


def table(rows: list[dict[str, Any]], *, with_benchmark: bool = False) -> list[str]:
    head = ["figure", "ours", "peer", "peer value", "ratio", "target", ""]
    if with_benchmark:
        head.insert(0, "benchmark")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        unit = f" {row['unit']}" if row["unit"] else ""
        cells = [
            row["figure"],
            number(row["ours"]) + unit,
            row.get("peer") or "",
            number(row.get("peer_value")) + (unit if row.get("peer_value") is not None else ""),
            f"{row['ratio']:.2f}x" if row.get("ratio") is not None else "",
            row.get("target") or "",
            verdict(row),
        ]
        if with_benchmark:
            cells.insert(0, row["benchmark"])
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return lines


def notes(rows: list[dict[str, Any]]) -> list[str]:
    """What each row's figures are exactly, below its table."""
    return [f"- **{row['figure']}**: {row['note']}" for row in rows if row.get("note")]


def provenance(result: dict[str, Any]) -> str:
    return (f"Measured at commit `{result.get('commit')}` on {result.get('cpu_count')} CPUs, "
            f"Python {result.get('python')}, {result.get('measured_at')}.")


def block(name: str, results: dict[str, dict[str, Any]]) -> str:
    if name == "summary":
        rows = [{**row, "benchmark": bench}
                for bench, result in sorted(results.items())
                for row in result.get("rows", []) if row.get("target")]
        commits = sorted({str(result.get("commit")) for result in results.values()})
        lines = table(rows, with_benchmark=True)
        lines.append("")
        lines.append(f"From {len(results)} result files, commit(s) "
                     + ", ".join(f"`{commit}`" for commit in commits) + ".")
        return "\n".join(lines) + "\n"
    if name not in results:
        return f"No result file `benchmarks/results/{name}.json` yet.\n"
    result = results[name]
    rows = result.get("rows", [])
    lines = [*table(rows), *(["", *notes(rows)] if notes(rows) else [])] if rows else []
    if result.get("details"):
        lines += ["", result["details"].strip()] if lines else [result["details"].strip()]
    return "\n".join([*lines, "", provenance(result)]) + "\n"


def render(doc: str, results: dict[str, dict[str, Any]]) -> str:
    return BLOCK.sub(lambda match: match.group(1) + block(match.group("name"), results)
                     + match.group(4), doc)


def load(folder: Path) -> dict[str, dict[str, Any]]:
    results = {}
    for path in sorted(folder.glob("*.json")):
        result = json.loads(path.read_text())
        results[result.get("benchmark", path.stem)] = result
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if the document differs from the result files")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--doc", type=Path, default=DOC)
    args = parser.parse_args()
    doc = args.doc.read_text()
    rendered = render(doc, load(args.results))
    if args.check:
        if rendered != doc:
            print(f"{args.doc} differs from {args.results}: run benchmarks/report.py")
            return 1
        return 0
    args.doc.write_text(rendered)
    print(f"wrote {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
