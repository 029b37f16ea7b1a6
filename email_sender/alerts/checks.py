"""The runbook's alert thresholds and the checks that apply them to a node's figures.

Thresholds and hold times (``for``) are those of ``deploy/prometheus/alerts.yml``, so the
in-process alerts, ``email-sender monitor`` and Prometheus agree; a unit test reads the rules
file and compares. Checks are pure: a :class:`Snapshot` in, one :class:`Check` per figure out.
A figure that was not measured (``None``) gives no check, except rates and p95 over a window
without traffic, which are ok ("no requests").
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class Severity(enum.IntEnum):
    """Ordered, and equal to the exit code of ``email-sender monitor``."""

    OK = 0
    WARNING = 1
    CRITICAL = 2

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Threshold:
    """When a check warns and when it is critical, how long it must hold first (the rule's
    ``for``), and the Prometheus rules that say the same."""

    warning: float | None
    critical: float | None
    warning_for: float = 0.0
    critical_for: float = 0.0
    rules: tuple[str, ...] = ()

    def hold(self, severity: Severity) -> float:
        return self.critical_for if severity is Severity.CRITICAL else self.warning_for


THRESHOLDS: dict[str, Threshold] = {
    # runbook: p95 > 100 ms WARNING, > 500 ms CRITICAL
    "api_latency_p95": Threshold(0.1, 0.5, 600, 300,
                                 ("EmailSenderLatencyP95High", "EmailSenderLatencyP95Critical")),
    # runbook: error rate > 1 % WARNING, > 5 % CRITICAL (normal mode only: a mode answers 503)
    "api_error_rate": Threshold(0.01, 0.05, 300, 300,
                                ("EmailSenderErrorRateHigh", "EmailSenderErrorRateCritical")),
    # runbook: memory usage > 85 % WARNING, > 95 % CRITICAL (of alerts.memory_limit)
    "memory": Threshold(0.85, 0.95, 600, 300,
                        ("EmailSenderMemoryHigh", "EmailSenderMemoryCritical")),
    "queue_age": Threshold(600, 3600, 300, 300,
                           ("EmailSenderQueueStuck", "EmailSenderQueueStuckCritical")),
    # runbook: vector insert errors > 0.1 % WARNING
    "vector_insert_errors": Threshold(0.001, None, 600, 0, ("EmailSenderVectorIndexErrors",)),
    # runbook: vector search latency > 50 ms WARNING
    "search_latency_p95": Threshold(0.05, None, 600, 0, ("EmailSenderVectorSearchSlow",)),
    # runbook: Qdrant connection errors > 0 CRITICAL (qdrant_manager not running)
    "vector_store": Threshold(None, None, 0, 60, ("EmailSenderQdrantUnavailable",)),
    # a manager degraded WARNING, failed or stopped CRITICAL
    "managers": Threshold(None, None, 300, 120,
                          ("EmailSenderManagerDegraded", "EmailSenderManagerFailed")),
    # the seeds' performance_monitor.sh: GET /health slower than 1 s (monitor only)
    "health_response": Threshold(1.0, None),
}

DOWN_STATES = ("failed", "stopped")
VECTOR_STORE_MANAGER = "qdrant_manager"


@dataclass(frozen=True)
class Snapshot:
    """A node's figures; ``None`` where not measured. Rates and p95 are over a window."""

    api_p95: float | None = None
    api_requests: float = 0.0
    api_error_rate: float | None = None
    memory_bytes: float | None = None
    memory_limit: float = 2 * 1024**3
    queue_oldest_age: float | None = None
    vector_inserts: float = 0.0
    vector_insert_error_rate: float | None = None
    search_p95: float | None = None
    searches: float = 0.0
    managers: dict[str, str] | None = None
    mode: str | None = None
    health_seconds: float | None = None


@dataclass(frozen=True)
class Check:
    name: str
    severity: Severity
    value: float | None
    threshold: str
    summary: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def firing(self) -> bool:
        return self.severity is not Severity.OK

    @property
    def hold(self) -> float:
        """How long this check must keep failing before it fires (the rule's ``for``)."""
        return THRESHOLDS[self.name].hold(self.severity)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "severity": self.severity.label,
            "value": self.value,
            "threshold": self.threshold,
            "summary": self.summary,
            **({"details": self.details} if self.details else {}),
        }


def graded(name: str, value: float) -> Severity:
    """The severity of ``value`` against the thresholds of ``name`` (strictly over)."""
    threshold = THRESHOLDS[name]
    if threshold.critical is not None and value > threshold.critical:
        return Severity.CRITICAL
    if threshold.warning is not None and value > threshold.warning:
        return Severity.WARNING
    return Severity.OK


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _percent(ratio: float) -> str:
    return f"{ratio * 100:.2f} %".replace(".00 %", " %")


def _limits(name: str, show: Callable[[float], str]) -> str:
    threshold = THRESHOLDS[name]
    parts = []
    if threshold.warning is not None:
        parts.append(f"warning > {show(threshold.warning)}")
    if threshold.critical is not None:
        parts.append(f"critical > {show(threshold.critical)}")
    return ", ".join(parts)


def _latency(name: str, what: str, p95: float | None, count: float) -> Check:
    limits = _limits(name, _ms)
    if p95 is None:
        return Check(name, Severity.OK, None, limits, f"{what}: no requests in the window")
    return Check(name, graded(name, p95), p95, limits,
                 f"{what} p95 {_ms(p95)} over {count:.0f} requests")


def _ratio(name: str, what: str, ratio: float | None, count: float) -> Check:
    limits = _limits(name, _percent)
    if ratio is None:
        return Check(name, Severity.OK, None, limits, f"{what}: none in the window")
    return Check(name, graded(name, ratio), ratio, limits,
                 f"{what}: {_percent(ratio)} of {count:.0f}")


def _memory(snapshot: Snapshot) -> Check | None:
    if snapshot.memory_bytes is None:
        return None
    used = snapshot.memory_bytes / snapshot.memory_limit
    mib = 1024 * 1024
    return Check("memory", graded("memory", used), used, _limits("memory", _percent),
                 f"resident memory {snapshot.memory_bytes / mib:.0f} MiB, {_percent(used)} of "
                 f"the {snapshot.memory_limit / mib:.0f} MiB limit")


def _queue_age(snapshot: Snapshot) -> Check | None:
    age = snapshot.queue_oldest_age
    if age is None:
        return None
    return Check("queue_age", graded("queue_age", age), age,
                 _limits("queue_age", lambda s: f"{s:.0f} s"),
                 f"the oldest due email has waited {age:.0f} s" if age else "no due email waits")


def _vector_store(managers: dict[str, str]) -> Check | None:
    state = managers.get(VECTOR_STORE_MANAGER)
    if state is None:
        return None
    down = state != "running"
    return Check("vector_store", Severity.CRITICAL if down else Severity.OK, float(down),
                 f"critical when {VECTOR_STORE_MANAGER} is not running",
                 f"{VECTOR_STORE_MANAGER} is {state}", {"state": state})


def _managers(managers: dict[str, str]) -> Check:
    down = sorted(name for name, state in managers.items() if state in DOWN_STATES)
    degraded = sorted(name for name, state in managers.items() if state == "degraded")
    threshold = "warning when one is degraded, critical when one is failed or stopped"
    if down:
        severity = Severity.CRITICAL
    elif degraded:
        severity = Severity.WARNING
    else:
        return Check("managers", Severity.OK, 0.0, threshold,
                     f"all {len(managers)} managers running or starting")
    names = [f"{name} {managers[name]}" for name in down + degraded]
    return Check("managers", severity, float(len(names)), threshold, ", ".join(names),
                 {"down": down, "degraded": degraded})


def evaluate(snapshot: Snapshot) -> list[Check]:
    """Every check the snapshot's figures allow, in a fixed order."""
    checks: list[Check | None] = [
        _latency("api_latency_p95", "API", snapshot.api_p95, snapshot.api_requests),
        # As the rules: a mode that answers 503 on purpose is not an error rate.
        _ratio("api_error_rate", "API 5xx answers", snapshot.api_error_rate,
               snapshot.api_requests)
        if snapshot.mode in (None, "normal") else None,
        _memory(snapshot),
        _queue_age(snapshot),
        _ratio("vector_insert_errors", "vector inserts retried or failed",
               snapshot.vector_insert_error_rate, snapshot.vector_inserts),
        _latency("search_latency_p95", "semantic search", snapshot.search_p95,
                 snapshot.searches),
    ]
    if snapshot.managers is not None:
        checks += [_vector_store(snapshot.managers), _managers(snapshot.managers)]
    if snapshot.health_seconds is not None:
        seconds = snapshot.health_seconds
        checks.append(Check("health_response", graded("health_response", seconds), seconds,
                            _limits("health_response", lambda s: f"{s:g} s"),
                            f"GET /health answered in {_ms(seconds)}"))
    return [check for check in checks if check is not None]


def worst(checks: list[Check]) -> Severity:
    return max((check.severity for check in checks), default=Severity.OK)
