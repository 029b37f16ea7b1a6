"""A running node's figures, read over HTTP: its ``/health`` and its metrics page.

``/health`` gives the managers' states and the mode first-hand, and how long it takes to answer
is the seeds' performance_monitor.sh figure. The metrics page is scraped twice, ``window``
seconds apart, and rates and p95 are read from the growth between the two scrapes (with no
window, from everything since the node started).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from email_sender.alerts.checks import Snapshot
from email_sender.alerts.figures import samples_from_text, snapshot_from_samples
from email_sender.errors import NodeUnreachable


@dataclass(frozen=True)
class Reading:
    snapshot: Snapshot
    health: dict[str, Any]


def _get(client: httpx.Client, url: str) -> httpx.Response:
    try:
        return client.get(url)
    except httpx.HTTPError as exc:
        raise NodeUnreachable(f"cannot reach {url}: {type(exc).__name__}: {exc}") from exc


def _scrape(client: httpx.Client, url: str) -> str:
    answer = _get(client, url)
    if answer.status_code != 200:
        raise NodeUnreachable(f"{url} answered {answer.status_code}, not a metrics page")
    return answer.text


def read_node(
    api_url: str,
    metrics_url: str,
    *,
    window: float,
    memory_limit: float,
    timeout: float = 5.0,
    api_key: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Reading:
    """Read the node at ``api_url`` and its metrics at ``metrics_url``; NodeUnreachable when
    either does not answer."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    with httpx.Client(timeout=timeout, headers=headers) as client:
        started = time.perf_counter()
        answer = _get(client, f"{api_url.rstrip('/')}/health")
        health_seconds = time.perf_counter() - started
        try:
            health: dict[str, Any] = answer.json()
        except ValueError as exc:
            raise NodeUnreachable(f"{api_url}/health did not answer JSON") from exc
        first = samples_from_text(_scrape(client, metrics_url))
        if window > 0:
            sleep(window)
            current, earlier = samples_from_text(_scrape(client, metrics_url)), first
        else:
            current, earlier = first, None
    snapshot = snapshot_from_samples(current, earlier, memory_limit=memory_limit)
    managers = health.get("managers")
    return Reading(
        snapshot=dataclasses.replace(
            snapshot,
            managers=(
                {name: row.get("state", "") for name, row in managers.items()}
                if isinstance(managers, dict) else snapshot.managers
            ),
            mode=health.get("mode") or snapshot.mode,
            health_seconds=health_seconds,
        ),
        health=health,
    )
