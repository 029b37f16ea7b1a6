"""HTTP load tests: N concurrent clients for a bounded time against a running service.

Every run is bounded twice, by ``duration`` and by ``max_requests``, and stops by itself. The
answer counts requests, errors by status, throughput and latency percentiles, and says whether
the seed's bar (>= 1000 req/s with p95 < 100 ms) was met.
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

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def meets_seed_bar(self) -> bool:
        return self.errors == 0 and self.rps >= SEED_RPS and self.p95_ms < SEED_P95_MS

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
