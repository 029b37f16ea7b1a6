"""Check the operator files: YAML parses, the dashboard is JSON, every metric name exists.

Run from the repository root:  .venv/bin/python deploy/check.py
Every ``email_sender_*`` name used in deploy/ and docs/operations.md must be declared in
email_sender/metrics.py (a histogram may be used with _bucket, _sum or _count). When promtool
and amtool are on the PATH, the Prometheus rules (with their unit tests) and the Alertmanager
config are checked too.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
NAME = re.compile(r"\bemail_sender_[a-z0-9_]+")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def declared_names() -> set[str]:
    source = (ROOT / "email_sender" / "metrics.py").read_text(encoding="utf-8")
    return set(re.findall(r"\"(email_sender_[a-z0-9_]+)\"", source))


def known(name: str, declared: set[str]) -> bool:
    if name in declared:
        return True
    return any(
        name.endswith(suffix) and name.removesuffix(suffix) in declared
        for suffix in HISTOGRAM_SUFFIXES
    )


def main() -> int:
    problems: list[str] = []
    declared = declared_names()

    yaml_files = sorted([*DEPLOY.rglob("*.yml"), *DEPLOY.rglob("*.yaml")])
    for path in yaml_files:
        try:
            yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            problems.append(f"{path.relative_to(ROOT)}: not valid YAML ({exc})")

    json_files = sorted(DEPLOY.rglob("*.json"))
    for path in json_files:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            problems.append(f"{path.relative_to(ROOT)}: not valid JSON ({exc})")
            continue
        if "panels" in data and not data["panels"]:
            problems.append(f"{path.relative_to(ROOT)}: a dashboard without panels")

    scanned = [*yaml_files, *json_files, ROOT / "docs" / "operations.md"]
    used = 0
    for path in scanned:
        if not path.exists():
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for name in NAME.findall(line):
                used += 1
                if not known(name, declared):
                    where = f"{path.relative_to(ROOT)}:{number}"
                    problems.append(f"{where}: {name} is not in email_sender/metrics.py")

    for tool, args in (
        ("promtool", ["check", "rules", str(DEPLOY / "prometheus" / "alerts.yml")]),
        ("promtool", ["check", "config", str(DEPLOY / "prometheus" / "prometheus.yml")]),
        ("promtool", ["test", "rules", str(DEPLOY / "prometheus" / "alerts_test.yml")]),
        ("amtool", ["check-config", str(DEPLOY / "alertmanager" / "alertmanager.yml")]),
    ):
        if shutil.which(tool) is None:
            print(f"- {tool} not installed: skipped {' '.join(args[:2])}")
            continue
        done = subprocess.run([tool, *args], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            problems.append(f"{tool} {' '.join(args)}:\n{done.stdout}{done.stderr}")
        else:
            print(f"- {tool} {args[0]} {Path(args[-1]).name}: ok")

    for problem in problems:
        print(f"❌ {problem}")
    if problems:
        return 1
    print(
        f"✅ {len(yaml_files)} YAML and {len(json_files)} JSON files parse; "
        f"{used} metric name uses, all declared in email_sender/metrics.py"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
