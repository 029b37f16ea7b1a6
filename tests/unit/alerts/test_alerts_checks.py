"""The alert checks: the runbook's thresholds, the same as the Prometheus rules, applied to figures
read from Prometheus samples."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from email_sender.alerts.checks import THRESHOLDS, Severity, Snapshot, evaluate, worst
from email_sender.alerts.figures import (
    histogram_quantile,
    samples_from_registry,
    samples_from_text,
    snapshot_from_samples,
)

RULES = Path(__file__).parents[3] / "deploy" / "prometheus" / "alerts.yml"
GIB = 1024**3


def rules() -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}


def seconds(duration: str) -> float:
    value, unit = re.fullmatch(r"(\d+)([smh])", duration).groups()  # type: ignore[union-attr]
    return float(value) * {"s": 1, "m": 60, "h": 3600}[unit]


def by_name(snapshot: Snapshot) -> dict[str, Any]:
    return {check.name: check for check in evaluate(snapshot)}


def test_thresholds_and_holds_are_those_of_the_prometheus_rules() -> None:
    """The in-process checks and deploy/prometheus/alerts.yml may not drift apart."""
    known = rules()
    for name, threshold in THRESHOLDS.items():
        for rule_name in threshold.rules:
            rule = known[rule_name]
            severity = Severity[rule["labels"]["severity"].upper()]
            assert seconds(rule.get("for", "0s")) == threshold.hold(severity), rule_name
            bound = threshold.critical if severity is Severity.CRITICAL else threshold.warning
            if bound is None:
                continue  # a state, not a figure: managers and the vector store
            compared = re.findall(r"\)?\s*>\s*([0-9.]+)\s*$", rule["expr"].split(" and ")[0]
                                  .strip(), flags=re.MULTILINE)
            assert compared and float(compared[-1]) == bound, (name, rule_name, compared)
    assert known["EmailSenderQdrantUnavailable"]["expr"].startswith(
        'email_sender_manager_state{manager="qdrant_manager", state!="running"}'
    )
    assert 'state=~"failed|stopped"' in known["EmailSenderManagerFailed"]["expr"]
    limit = yaml.safe_load(RULES.read_text())["groups"][0]["rules"][0]["expr"]
    assert limit == f"vector({2 * GIB})"


@pytest.mark.parametrize(
    ("figures", "name", "severity"),
    [
        ({"api_p95": 0.05, "api_requests": 10}, "api_latency_p95", Severity.OK),
        ({"api_p95": 0.1, "api_requests": 10}, "api_latency_p95", Severity.OK),
        ({"api_p95": 0.2, "api_requests": 10}, "api_latency_p95", Severity.WARNING),
        ({"api_p95": 0.6, "api_requests": 10}, "api_latency_p95", Severity.CRITICAL),
        ({"api_error_rate": 0.005}, "api_error_rate", Severity.OK),
        ({"api_error_rate": 0.02}, "api_error_rate", Severity.WARNING),
        ({"api_error_rate": 0.2}, "api_error_rate", Severity.CRITICAL),
        ({"memory_bytes": 0.80 * GIB, "memory_limit": GIB}, "memory", Severity.OK),
        ({"memory_bytes": 0.90 * GIB, "memory_limit": GIB}, "memory", Severity.WARNING),
        ({"memory_bytes": 0.96 * GIB, "memory_limit": GIB}, "memory", Severity.CRITICAL),
        ({"queue_oldest_age": 30.0}, "queue_age", Severity.OK),
        ({"queue_oldest_age": 601.0}, "queue_age", Severity.WARNING),
        ({"queue_oldest_age": 3601.0}, "queue_age", Severity.CRITICAL),
        ({"vector_insert_error_rate": 0.0005}, "vector_insert_errors", Severity.OK),
        ({"vector_insert_error_rate": 0.002}, "vector_insert_errors", Severity.WARNING),
        ({"vector_insert_error_rate": 0.5}, "vector_insert_errors", Severity.WARNING),
        ({"search_p95": 0.04}, "search_latency_p95", Severity.OK),
        ({"search_p95": 0.06}, "search_latency_p95", Severity.WARNING),
        ({"managers": {"qdrant_manager": "running"}}, "vector_store", Severity.OK),
        ({"managers": {"qdrant_manager": "failed"}}, "vector_store", Severity.CRITICAL),
        ({"managers": {"database": "running", "embedder": "starting"}}, "managers", Severity.OK),
        ({"managers": {"database": "running", "api": "degraded"}}, "managers", Severity.WARNING),
        ({"managers": {"api": "degraded", "event_bus": "failed"}}, "managers", Severity.CRITICAL),
        ({"health_seconds": 0.2}, "health_response", Severity.OK),
        ({"health_seconds": 1.5}, "health_response", Severity.WARNING),
    ],
)
def test_each_check_grades_its_figure(figures: dict[str, Any], name: str,
                                      severity: Severity) -> None:
    check = by_name(Snapshot(**figures))[name]
    assert check.severity is severity, check
    assert check.summary


def test_figures_not_measured_give_no_check_and_quiet_windows_are_ok() -> None:
    checks = by_name(Snapshot())
    assert set(checks) == {"api_latency_p95", "api_error_rate", "vector_insert_errors",
                           "search_latency_p95"}
    assert all(check.severity is Severity.OK for check in checks.values())
    assert checks["api_latency_p95"].summary == "API: no requests in the window"
    assert worst(list(checks.values())) is Severity.OK


def test_the_error_rate_is_not_checked_while_a_mode_answers_503_on_purpose() -> None:
    assert "api_error_rate" not in by_name(Snapshot(api_error_rate=1.0, mode="maintenance"))
    assert by_name(Snapshot(api_error_rate=1.0, mode="normal"))["api_error_rate"].severity == 2


def test_the_manager_check_names_what_is_down() -> None:
    check = by_name(Snapshot(managers={"qdrant_manager": "failed", "api": "degraded",
                                       "database": "running"}))["managers"]
    assert check.summary == "qdrant_manager failed, api degraded"
    assert check.details == {"down": ["qdrant_manager"], "degraded": ["api"]}
    assert check.hold == 120  # EmailSenderManagerFailed's for: 2m


def test_worst_is_the_exit_code() -> None:
    checks = evaluate(Snapshot(api_p95=0.2, api_requests=5, queue_oldest_age=4000))
    assert worst(checks) is Severity.CRITICAL
    assert int(worst(checks)) == 2


def test_p95_is_read_from_buckets_as_histogram_quantile_does() -> None:
    registry = CollectorRegistry()
    latency = Histogram("email_sender_http_request_duration_seconds", "t", ["route", "method"],
                        buckets=(0.01, 0.1, 1.0), registry=registry)
    for _ in range(90):
        latency.labels("/a", "GET").observe(0.005)
    for _ in range(10):
        latency.labels("/b", "POST").observe(0.5)
    samples = samples_from_registry(registry)
    p95, count = histogram_quantile(0.95, samples, "email_sender_http_request_duration_seconds")
    assert count == 100
    # rank 95 falls in (0.1, 1.0] holding 10 observations above 90: 0.1 + 0.9 * 5/10
    assert p95 == pytest.approx(0.55)
    for _ in range(10):
        latency.labels("/b", "POST").observe(30)  # +Inf: the highest finite bound
    p95, _ = histogram_quantile(0.95, samples_from_registry(registry),
                                "email_sender_http_request_duration_seconds")
    assert p95 == 1.0


def test_a_window_forgets_what_came_before_it() -> None:
    """Rates and p95 are the growth between two samplings, so a slow burst ages out."""
    registry = CollectorRegistry()
    latency = Histogram("email_sender_http_request_duration_seconds", "t", ["route", "method"],
                        buckets=(0.01, 0.1, 1.0), registry=registry)
    answers = Counter("email_sender_http_requests", "n", ["route", "method", "status"],
                      registry=registry)
    for _ in range(50):
        latency.labels("/a", "GET").observe(0.9)
        answers.labels("/a", "GET", "500").inc()
    slow = samples_from_registry(registry)
    assert by_name(snapshot_from_samples(slow, None, memory_limit=GIB))[
        "api_latency_p95"].severity is Severity.CRITICAL
    for _ in range(50):
        latency.labels("/a", "GET").observe(0.002)
        answers.labels("/a", "GET", "200").inc()
    later = samples_from_registry(registry)
    figures = snapshot_from_samples(later, slow, memory_limit=GIB)
    assert figures.api_requests == 50
    assert figures.api_error_rate == 0.0
    assert figures.api_p95 is not None and figures.api_p95 < 0.01
    assert worst(evaluate(figures)) is Severity.OK


def test_a_scraped_page_gives_the_same_figures_as_the_registry() -> None:
    registry = CollectorRegistry()
    search = Histogram("email_sender_vector_search_duration_seconds", "t",
                       buckets=(0.01, 0.05, 0.1), registry=registry)
    indexed = Counter("email_sender_vector_index", "n", ["outcome"], registry=registry)
    for value in (0.02, 0.03, 0.08, 0.09):
        search.observe(value)
    indexed.labels("indexed").inc(997)
    indexed.labels("retried").inc(2)
    indexed.labels("failed").inc(1)
    direct = snapshot_from_samples(samples_from_registry(registry), None, memory_limit=GIB)
    scraped = snapshot_from_samples(samples_from_text(generate_latest(registry).decode()), None,
                                    memory_limit=GIB)
    assert direct == scraped
    assert direct.vector_insert_error_rate == pytest.approx(0.003)
    assert direct.search_p95 == pytest.approx(0.095)  # 0.05 + 0.05 * (3.8 - 2) / 2
    checks = by_name(direct)
    assert checks["vector_insert_errors"].severity is Severity.WARNING
    assert checks["search_latency_p95"].severity is Severity.WARNING
