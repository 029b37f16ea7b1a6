"""``email-sender monitor``: the alert checks of a running node, once, with an exit code.

The seeds' performance_monitor.sh as a command: it reads the node over HTTP (``/health`` and its
metrics page), runs the same checks as the node's own alerts (:mod:`email_sender.alerts.checks`)
and prints one line per check. Exit codes follow the monitoring-plugin convention: 0 ok,
1 warning, 2 critical, 3 the node could not be read (unknown).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from email_sender.alerts.checks import Check, Severity, evaluate, worst
from email_sender.alerts.remote import read_node
from email_sender.errors import NodeUnreachable
from email_sender.settings import Settings, load_settings

UNREACHABLE = 3
MARKS = {Severity.OK: "✅", Severity.WARNING: "⚠️ ", Severity.CRITICAL: "❌"}


def _loopback(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def _api_url(settings: Settings) -> str:
    return f"http://{_loopback(settings.server.host)}:{settings.server.port}"


def _metrics_url(settings: Settings) -> str:
    metrics = settings.metrics
    return f"http://{_loopback(metrics.host)}:{metrics.port}{metrics.path}"


def _line(check: Check) -> str:
    return f"{MARKS[check.severity]} {check.name}: {check.summary} ({check.threshold})"


def monitor(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="YAML config file: the node's ports and "
                     "alerts.memory_limit.", envvar="EMAIL_SENDER_CONFIG"),
    ] = None,
    url: Annotated[
        str | None, typer.Option(help="Base URL of the node (default from server.host/port).")
    ] = None,
    metrics_url: Annotated[
        str | None, typer.Option(help="Its metrics page (default from metrics.host/port/path).")
    ] = None,
    window: Annotated[
        float, typer.Option(min=0, max=3600, help="Seconds between the two metrics scrapes that "
                            "rates and p95 are read over (0: since the node started).")
    ] = 5.0,
    memory_limit: Annotated[
        int | None, typer.Option(help="Bytes the node may use (default alerts.memory_limit).")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each answer.")] = 5.0,
    api_key: Annotated[
        str | None, typer.Option(envvar="EMAIL_SENDER_API_KEY", help="Bearer key, if needed.")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print a JSON report.")] = False,
) -> None:
    """Check a running node against the alert thresholds once: one line per check; exit 0 ok,
    1 warning, 2 critical, 3 when the node cannot be read."""
    settings = load_settings(config)
    api = (url or _api_url(settings)).rstrip("/")
    scrape = metrics_url or _metrics_url(settings)
    try:
        reading = read_node(
            api, scrape, window=window, timeout=timeout, api_key=api_key,
            memory_limit=memory_limit or settings.alerts.memory_limit,
        )
    except NodeUnreachable as exc:
        if json_output:
            typer.echo(json.dumps({"node": api, "status": "unknown", "error": exc.message}))
        else:
            typer.echo(f"❌ node: {exc.message}")
        raise typer.Exit(UNREACHABLE) from None
    checks = evaluate(reading.snapshot)
    severity = worst(checks)
    if json_output:
        report = {
            "node": api,
            "node_id": reading.health.get("node_id"),
            "status": severity.label,
            "window_seconds": window,
            "checks": [check.as_dict() for check in checks],
        }
        typer.echo(json.dumps(report, indent=2))
    else:
        for check in checks:
            typer.echo(_line(check))
        counts = {level: sum(c.severity is level for c in checks) for level in Severity}
        typer.echo(
            f"{severity.label.upper()}: {len(checks)} checks of {api}, "
            f"{counts[Severity.WARNING]} warning, {counts[Severity.CRITICAL]} critical"
        )
    raise typer.Exit(int(severity))
