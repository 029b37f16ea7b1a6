"""HTTP load tests: N concurrent clients for a bounded time against a running service.

Every run is bounded twice, by ``duration`` and by ``max_requests``, and stops by itself. The
answer counts requests, errors by status, throughput and latency percentiles, and says whether
the scenario's bar, taken from the seeds' runbooks, was met:

- ``send``: POST /api/v1/emails, the load test (50 clients, >= 1000 req/s with p95 < 100 ms);
- ``search``: POST /api/v1/search with varied queries, the vector stress test (100 clients;
  the runbook's vector search latency bar, p95 < 50 ms; no throughput bar).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

SEED_RPS = 1000.0
SEED_P95_MS = 100.0
SEED_SEARCH_P95_MS = 50.0


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    statuses: dict[str, int] = field(default_factory=dict)
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    scenario: str = "send"
    min_rps: float = SEED_RPS
    max_p95_ms: float = SEED_P95_MS

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def meets_seed_bar(self) -> bool:
        return self.errors == 0 and self.rps >= self.min_rps and self.p95_ms < self.max_p95_ms

    @property
    def bar(self) -> str:
        """The bar in words, as the CLI prints it."""
        throughput = f">= {self.min_rps:.0f} req/s, " if self.min_rps else ""
        return f"{throughput}p95 < {self.max_p95_ms:.0f} ms, no errors"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rps": round(self.rps, 1), "meets_seed_bar": self.meets_seed_bar}


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


def sample_email(n: int) -> dict[str, Any]:
    return {
        "from": "Load Test <load@example.com>",
        "to": [f"user{n % 1000}@example.org"],
        "subject": f"Load test message {n}",
        "text": "This message was sent by email-sender loadtest.",
        "tags": ["loadtest"],
    }


# Words of booking mail, combined so that most queries differ: the query-embedding cache must
# not answer the whole run.
_SEARCH_WORDS = (
    "concert", "hall", "availability", "fee", "proposal", "technical", "rider", "stage",
    "backline", "invoice", "refund", "late", "delivery", "contract", "signed", "tour",
    "dates", "accommodation", "travel", "declined", "booking", "question", "schedule", "venue",
)


def sample_search(n: int) -> dict[str, Any]:
    words = len(_SEARCH_WORDS)
    picked = [_SEARCH_WORDS[(n * step) % words] for step in (1, 7, 11)]
    return {"query": f"{' '.join(picked)} {n // words}", "limit": 10}


@dataclass(frozen=True)
class Scenario:
    """What one request of a run is, and the bar the run is held to."""

    name: str
    path: str
    body: Callable[[int], Any]
    min_rps: float
    max_p95_ms: float
    concurrency: int


SCENARIOS = {
    "send": Scenario("send", "/api/v1/emails", sample_email, SEED_RPS, SEED_P95_MS, 50),
    "search": Scenario("search", "/api/v1/search", sample_search, 0.0, SEED_SEARCH_P95_MS, 100),
}


async def run_scenario(
    url: str,
    scenario: Scenario,
    *,
    concurrency: int | None = None,
    duration: float = 10.0,
    max_requests: int = 1_000_000,
    path: str | None = None,
    api_key: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> LoadResult:
    """Run ``scenario`` (its concurrency unless given) and hold the result to its bar."""
    result = await run_load(
        url, concurrency=concurrency or scenario.concurrency, duration=duration,
        max_requests=max_requests, path=path or scenario.path, body=scenario.body,
        api_key=api_key, progress=progress,
    )
    result.scenario = scenario.name
    result.min_rps = scenario.min_rps
    result.max_p95_ms = scenario.max_p95_ms
    return result


async def run_load(
    url: str,
    *,
    concurrency: int = 50,
    duration: float = 10.0,
    max_requests: int = 1_000_000,
    method: str = "POST",
    path: str = "/api/v1/emails",
    body: Callable[[int], Any] | None = sample_email,
    api_key: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> LoadResult:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    issued = 0
    deadline = time.perf_counter() + duration

    async def one_client() -> None:
        # One connection per client: httpx's shared pool slows down past a few connections.
        nonlocal issued
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30.0,
                                     limits=httpx.Limits(max_connections=1)) as client:
            while issued < max_requests and time.perf_counter() < deadline:
                n = issued
                issued += 1
                started = time.perf_counter()
                try:
                    answer = await client.request(
                        method, path, json=body(n) if body else None,
                        headers={"X-Request-ID": uuid.uuid4().hex},
                    )
                    statuses[str(answer.status_code)] += 1
                except httpx.HTTPError as exc:
                    statuses[type(exc).__name__] += 1
                latencies.append((time.perf_counter() - started) * 1000)
                if progress is not None:
                    progress(1)

    started = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    errors = sum(count for status, count in statuses.items() if not status.startswith("2"))
    return LoadResult(
        requests=len(latencies), errors=errors, seconds=elapsed, statuses=dict(statuses),
        p50_ms=round(percentile(latencies, 0.50), 2), p95_ms=round(percentile(latencies, 0.95), 2),
        p99_ms=round(percentile(latencies, 0.99), 2), max_ms=round(latencies[-1], 2)
        if latencies else 0.0,
    )
