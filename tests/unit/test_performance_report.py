"""docs/performance.md's tables are written from the benchmarks' result files, never by hand."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks import report

ROOT = Path(__file__).resolve().parents[2]

DOC = """# Performance

<!-- results: summary -->
<!-- /results -->

## Delivery

Prose kept by hand.

<!-- results: delivery -->
stale
<!-- /results -->

<!-- results: memory -->
<!-- /results -->
"""


def result(name: str, rows: list[dict[str, Any]], details: str | None = None) -> dict[str, Any]:
    return {"benchmark": name, "commit": "abc1234", "cpu_count": 2, "python": "3.11.7",
            "measured_at": "2026-12-05T08:00:00+00:00", "rows": rows, "details": details,
            "figures": {}}


def drain_row(ours: float, met: bool) -> dict[str, Any]:
    return {"figure": "drain", "ours": ours, "unit": "emails/s", "peer": "post-office",
            "peer_value": 1000.0, "ratio": ours / 1000.0, "target": ">= 1.0x", "met": met,
            "note": "N = 3,000, 4 connections"}


def write(folder: Path, *results: dict[str, Any]) -> Path:
    folder.mkdir(exist_ok=True)
    for one in results:
        (folder / f"{one['benchmark']}.json").write_text(json.dumps(one))
    return folder


def test_the_tables_come_from_the_result_files_and_the_prose_stays(tmp_path: Path) -> None:
    folder = write(tmp_path / "results", result("delivery", [drain_row(1234.5, True)]),
                   result("http", [{**drain_row(900.0, False), "target": None}]))

    rendered = report.render(DOC, report.load(folder))

    assert "Prose kept by hand." in rendered
    assert "stale" not in rendered
    assert "| drain | 1,234 emails/s | post-office | 1,000 emails/s | 1.23x | >= 1.0x | met |" \
        in rendered
    # The summary names the benchmark of each row that has a target, and only those.
    assert "| delivery | drain | 1,234 emails/s |" in rendered
    assert "| http |" not in rendered
    assert "No result file `benchmarks/results/memory.json` yet." in rendered
    assert "Measured at commit `abc1234` on 2 CPUs" in rendered
    # A row's note is said under its section's table, not in the summary.
    assert rendered.count("- **drain**: N = 3,000, 4 connections") == 1
    # Rendering what was rendered changes nothing.
    assert report.render(rendered, report.load(folder)) == rendered


def test_a_miss_is_shown_as_not_met_and_details_follow_the_table(tmp_path: Path) -> None:
    unjudged = {**drain_row(1100.0, True), "figure": "drain, other peer", "met": None}
    folder = write(tmp_path / "results",
                   result("delivery", [drain_row(900.0, False), unjudged],
                          details="| a | b |\n|---|---|"))

    rendered = report.render(DOC, report.load(folder))

    assert "| 0.90x | >= 1.0x | **not met** |" in rendered
    assert "| 1.10x | >= 1.0x | not judged |" in rendered
    assert rendered.index("**not met**") < rendered.index("| a | b |")


def test_check_fails_on_a_figure_edited_by_hand(tmp_path: Path) -> None:
    folder = write(tmp_path / "results", result("delivery", [drain_row(1234.5, True)]))
    doc = tmp_path / "performance.md"
    doc.write_text(report.render(DOC, report.load(folder)))

    def check() -> int:
        return subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / "report.py"), "--check",
             "--results", str(folder), "--doc", str(doc)], capture_output=True, timeout=60,
        ).returncode

    assert check() == 0
    doc.write_text(doc.read_text().replace("1,234 emails/s", "1,500 emails/s"))
    assert check() == 1


def test_the_published_document_matches_the_committed_results() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "report.py"), "--check"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout
