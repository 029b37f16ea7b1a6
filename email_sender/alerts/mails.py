"""What the mail about an alert episode says.

Alert mail is ordinary mail: it goes through the intake into the outbox, so suppressions,
retries and the attempt log apply, and it is tagged ``alert`` (list it with
``GET /api/v1/emails?tag=alert``). Its idempotency key names the node, the episode and the mail's
number in it, so a mail handed in twice (after an outbox error) is kept once.
"""

from __future__ import annotations

from datetime import UTC, datetime

from email_sender.alerts.checks import THRESHOLDS
from email_sender.alerts.notifier import Notice
from email_sender.mail.message import EmailIn

TAG = "alert"
PREFIX = "[email-sender]"

# The runbook's escalation levels ("Niveaux d'Escalade").
LEVELS = {
    1: "on-call (dev team): restart services, read the logs, test connectivity",
    2: "infrastructure (DevOps): database, Qdrant, network, deploys and rollbacks",
    3: "maintainers (experts): data corruption, complex performance problems, security",
}


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def subject(notice: Notice, node: str) -> str:
    name, severity = notice.check.name, notice.severity.label.upper()
    if notice.kind == "firing":
        return f"{PREFIX} FIRING {severity}: {name} on {node} (level {notice.level})"
    if notice.kind == "reminder":
        return (f"{PREFIX} STILL FIRING {severity}: {name} on {node} for "
                f"{_duration(notice.duration)} (level {notice.level})")
    if notice.kind == "escalated":
        return (f"{PREFIX} ESCALATED TO LEVEL {notice.level}, {severity}: {name} on {node} "
                f"for {_duration(notice.duration)}")
    if notice.kind == "worse":
        return f"{PREFIX} NOW {severity}: {name} on {node} (level {notice.level})"
    return (f"{PREFIX} RESOLVED: {name} on {node} after {_duration(notice.duration)} "
            f"(was {notice.peak.label})")


def body(notice: Notice, node: str, *, cooldown: float) -> str:
    check = notice.check
    rules = ", ".join(THRESHOLDS[check.name].rules) or "none (the seeds' monitor script)"
    lines = [
        f"Alert: {check.name}",
        f"State: {'resolved' if notice.kind == 'resolved' else notice.severity.label}"
        + (f" (at worst {notice.peak.label})" if notice.kind == "resolved" else ""),
        f"Node: {node}",
        f"Now: {check.summary}",
        f"Thresholds: {check.threshold}",
        f"Since: {_when(notice.started_at)} ({_duration(notice.duration)} ago)",
        f"Escalation level: {notice.level} of 3, {LEVELS[notice.level]}",
        f"Mail {notice.number} of this alert; episode {notice.episode}",
        f"Prometheus rules: {rules} (deploy/prometheus/alerts.yml)",
        "",
    ]
    if notice.kind == "resolved":
        lines.append("The check has been ok long enough (alerts.resolve_after): no more mail "
                     "about this episode.")
    else:
        lines.append(f"Reminded every {_duration(cooldown)} while it fires "
                     "(alerts.cooldown); escalation levels by alerts.escalation.")
        lines.append("Check now: email-sender monitor --config <file>; "
                     "email-sender health --detailed.")
    lines.append("Runbook: docs/operations.md, \"Alerts mailed by the service\".")
    return "\n".join(lines) + "\n"


def compose(notice: Notice, *, node: str, sender: str, cooldown: float) -> EmailIn:
    """The email for ``notice``, ready for the intake."""
    return EmailIn.model_validate(
        {
            "from": sender,
            "to": notice.recipients,
            "subject": subject(notice, node),
            "text": body(notice, node, cooldown=cooldown),
            "tags": [TAG],
            "metadata": {
                "alert": notice.check.name,
                "kind": notice.kind,
                "severity": notice.severity.label,
                "peak": notice.peak.label,
                "level": notice.level,
                "episode": notice.episode,
                "node": node,
            },
            "idempotency_key": f"alert:{node}:{notice.episode}:{notice.number}",
        }
    )
