"""Check the operator files: YAML parses, the dashboard is JSON, every metric name exists,
every alert is unit-tested.

Run from the repository root:  .venv/bin/python deploy/check.py [--deploy-dir DIR] [--no-tools]

- Every ``email_sender_*`` series used in deploy/ and docs/operations.md must be one the service
  exports: the names are read from the live registry of email_sender/metrics.py (a counter
  exports ``_total``, a histogram ``_bucket``, ``_sum`` and ``_count``), not from its text.
- Every ``email_sender:*`` name (a recording rule) must be recorded in prometheus/alerts.yml.
- Every alert of prometheus/alerts.yml must have a case in prometheus/alerts_test.yml where it
  fires and one where it does not, so that ``promtool test rules`` can catch a broken rule.
- Unless ``--no-tools``, promtool and amtool check the rules, their unit tests, the Prometheus
  and the Alertmanager configs when they are installed (CI installs them and runs them itself).

Exit code 0 when every check passes, 1 otherwise, with one ❌ line per problem.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SERIES = re.compile(r"\bemail_sender_[a-z0-9_]+")
RECORDED = re.compile(r"\bemail_sender:[a-z0-9_:]+")
SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count"),
    "info": ("_info",),
}
TOOL_TIMEOUT = 60


def exported() -> tuple[set[str], set[str]]:
    """The series names the service's registry exports, and the names of their families (a
    histogram's family name is no series, but the runbook names the histogram by it)."""
    sys.path.insert(0, str(ROOT))
    from email_sender.metrics import REGISTRY

    series: set[str] = set()
    families: set[str] = set()
    for family in REGISTRY.collect():
        families.add(family.name)
        suffixes = SUFFIXES.get(family.type, ("",))
        series.update(family.name + suffix for suffix in suffixes)
        series.update(sample.name for sample in family.samples)
    return {name for name in series if not name.endswith("_created")}, families


def shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def recording_rules(rules: dict[str, object] | None) -> set[str]:
    return {str(rule["record"]) for rule in _rules(rules) if "record" in rule}


def alert_names(rules: dict[str, object] | None) -> set[str]:
    return {str(rule["alert"]) for rule in _rules(rules) if "alert" in rule}


def _rules(rules: dict[str, object] | None) -> Iterable[dict[str, object]]:
    groups = (rules or {}).get("groups") or []
    assert isinstance(groups, list)
    for group in groups:
        yield from group.get("rules") or []


def alert_test_cases(tests: dict[str, object] | None) -> tuple[set[str], set[str]]:
    """The alerts some case expects to fire, and those some case expects to stay quiet."""
    fired: set[str] = set()
    quiet: set[str] = set()
    cases = (tests or {}).get("tests") or []
    assert isinstance(cases, list)
    for case in cases:
        for check in case.get("alert_rule_test") or []:
            (fired if check.get("exp_alerts") else quiet).add(str(check["alertname"]))
    return fired, quiet


def check_files(deploy: Path, docs: Path) -> tuple[list[str], str]:
    """Every problem found in the files, and a summary of what was checked."""
    problems: list[str] = []
    parsed: dict[Path, object] = {}
    yaml_files = sorted([*deploy.rglob("*.yml"), *deploy.rglob("*.yaml")])
    for path in yaml_files:
        try:
            parsed[path] = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            problems.append(f"{shown(path)}: not valid YAML ({exc})")
    json_files = sorted(deploy.rglob("*.json"))
    for path in json_files:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            problems.append(f"{shown(path)}: not valid JSON ({exc})")
            continue
        if "panels" in data and not data["panels"]:
            problems.append(f"{shown(path)}: a dashboard without panels")

    rules_path = deploy / "prometheus" / "alerts.yml"
    tests_path = deploy / "prometheus" / "alerts_test.yml"
    rules = parsed.get(rules_path)
    recorded = recording_rules(rules) if isinstance(rules, dict) else set()
    series, families = exported()

    used = 0
    for path in [*yaml_files, *json_files, docs]:
        if not path.exists():
            continue
        known = series | families if path == docs else series
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for name in SERIES.findall(line):
                used += 1
                if name not in known:
                    problems.append(
                        f"{shown(path)}:{number}: {name} is not a series the service exports "
                        "(email_sender/metrics.py)"
                    )
            for name in RECORDED.findall(line):
                used += 1
                if name not in recorded:
                    problems.append(
                        f"{shown(path)}:{number}: {name} is not recorded in {shown(rules_path)}"
                    )

    alerts = alert_names(rules) if isinstance(rules, dict) else set()
    tests = parsed.get(tests_path)
    fired, quiet = alert_test_cases(tests) if isinstance(tests, dict) else (set(), set())
    where = shown(tests_path)
    for alert in sorted(alerts - fired):
        problems.append(f"{where}: no case where {alert} fires")
    for alert in sorted(alerts - quiet):
        problems.append(f"{where}: no case where {alert} stays quiet (exp_alerts: [])")
    for alert in sorted((fired | quiet) - alerts):
        problems.append(f"{where}: {alert} is tested but is not an alert of {shown(rules_path)}")

    summary = (
        f"{len(yaml_files)} YAML and {len(json_files)} JSON files parse; {used} metric name "
        f"uses, all exported by email_sender/metrics.py or recorded; {len(alerts)} alerts, "
        "each tested firing and quiet"
    )
    return problems, summary


def run_tools(deploy: Path) -> list[str]:
    problems: list[str] = []
    for tool, args in (
        ("promtool", ["check", "rules", str(deploy / "prometheus" / "alerts.yml")]),
        ("promtool", ["check", "config", str(deploy / "prometheus" / "prometheus.yml")]),
        ("promtool", ["test", "rules", str(deploy / "prometheus" / "alerts_test.yml")]),
        ("amtool", ["check-config", str(deploy / "alertmanager" / "alertmanager.yml")]),
    ):
        if shutil.which(tool) is None:
            print(f"- {tool} not installed: skipped {' '.join(args[:2])}")
            continue
        try:
            done = subprocess.run(
                [tool, *args], capture_output=True, text=True, check=False, timeout=TOOL_TIMEOUT
            )
        except subprocess.TimeoutExpired:
            problems.append(f"{tool} {' '.join(args)}: no answer within {TOOL_TIMEOUT} s")
            continue
        if done.returncode != 0:
            problems.append(f"{tool} {' '.join(args)}:\n{done.stdout}{done.stderr}")
        else:
            print(f"- {tool} {args[0]} {Path(args[-1]).name}: ok")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deploy-dir", type=Path, default=ROOT / "deploy")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "operations.md")
    parser.add_argument("--no-tools", action="store_true", help="do not run promtool/amtool")
    options = parser.parse_args(argv)

    problems, summary = check_files(options.deploy_dir, options.docs)
    if not options.no_tools:
        problems += run_tools(options.deploy_dir)
    for problem in problems:
        print(f"❌ {problem}")
    if problems:
        return 1
    print(f"✅ {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
