"""From Prometheus samples to the figures the checks read.

The same arithmetic serves both sides: samples collected from this process's registry (the
node's own alerts) and samples parsed from a scraped ``/metrics`` page (``email-sender
monitor``). Counters and histograms are cumulative, so rates and p95 are taken from the
difference between two samplings, as Prometheus's ``rate()`` over a window does: a burst of slow
requests ages out of the window and its alert can clear.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry
from prometheus_client.samples import Sample

from email_sender.alerts.checks import Snapshot

SampleKey = tuple[str, tuple[tuple[str, str], ...]]
Samples = dict[SampleKey, float]

API_LATENCY = "email_sender_http_request_duration_seconds"
API_REQUESTS = "email_sender_http_requests_total"
SEARCH_LATENCY = "email_sender_vector_search_duration_seconds"
VECTOR_INDEX = "email_sender_vector_index_total"
RESIDENT_MEMORY = "email_sender_process_resident_memory_bytes"
QUEUE_OLDEST_AGE = "email_sender_queue_oldest_age_seconds"
MANAGER_STATE = "email_sender_manager_state"
SERVICE_MODE = "email_sender_service_mode"
# The outcomes the rule counts as insert errors (indexed is the success).
VECTOR_INDEX_ERRORS = ("retried", "failed")


def _flatten(samples: Iterable[Sample]) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): float(sample.value)
        for sample in samples
    }


def samples_from_registry(registry: CollectorRegistry) -> Samples:
    """Every sample this process exports now."""
    return _flatten(sample for family in registry.collect() for sample in family.samples)


def samples_from_text(text: str) -> Samples:
    """Every sample of a Prometheus text exposition (a scraped ``/metrics`` page)."""
    return _flatten(
        sample for family in text_string_to_metric_families(text) for sample in family.samples
    )


def increase(current: Samples, earlier: Samples | None) -> Samples:
    """What each cumulative sample grew by since ``earlier`` (all of it after a reset)."""
    if earlier is None:
        return dict(current)
    grown: Samples = {}
    for key, value in current.items():
        before = earlier.get(key, 0.0)
        grown[key] = value - before if value >= before else value
    return grown


def _select(samples: Samples, name: str) -> Iterable[tuple[dict[str, str], float]]:
    for (sample_name, labels), value in samples.items():
        if sample_name == name:
            yield dict(labels), value


def _total(
    samples: Samples, name: str, keep: Callable[[dict[str, str]], bool] | None = None
) -> float:
    return sum(value for labels, value in _select(samples, name) if keep is None or keep(labels))


def histogram_quantile(quantile: float, samples: Samples, name: str) -> tuple[float | None, float]:
    """(the quantile, the observation count) of a histogram summed over its labels, read from
    its buckets as Prometheus's ``histogram_quantile`` reads them (linear inside a bucket; the
    highest finite bound when the quantile falls in ``+Inf``). None without observations."""
    buckets: dict[float, float] = {}
    for labels, value in _select(samples, f"{name}_bucket"):
        bound = float(labels["le"])
        buckets[bound] = buckets.get(bound, 0.0) + value
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None, 0.0
    count = buckets[bounds[-1]]
    rank = quantile * count
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        if buckets[bound] >= rank:
            if math.isinf(bound):
                finite = [b for b in bounds if not math.isinf(b)]
                return (finite[-1] if finite else None), count
            inside = buckets[bound] - lower_count
            share = (rank - lower_count) / inside if inside > 0 else 1.0
            return lower_bound + (bound - lower_bound) * share, count
        lower_bound, lower_count = bound, buckets[bound]
    return None, count


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole > 0 else None


def _gauge(samples: Samples, name: str) -> float | None:
    values = [value for _, value in _select(samples, name)]
    return max(values) if values else None


def manager_states(samples: Samples) -> dict[str, str] | None:
    """Each manager's state from ``email_sender_manager_state`` (1 marks the state)."""
    states = {
        labels["manager"]: labels["state"]
        for labels, value in _select(samples, MANAGER_STATE)
        if value == 1
    }
    return states or None


def service_mode(samples: Samples) -> str | None:
    modes = [labels["mode"] for labels, value in _select(samples, SERVICE_MODE) if value == 1]
    return modes[0] if modes else None


def snapshot_from_samples(
    current: Samples, earlier: Samples | None, *, memory_limit: float
) -> Snapshot:
    """The figures of a node from two samplings of its metrics; ``earlier`` None: since start.

    Manager states, the mode and the queue's age are read from the gauges; the node's own alerts
    replace them with what it knows first-hand.
    """
    window = increase(current, earlier)
    api_p95, api_count = histogram_quantile(0.95, window, API_LATENCY)
    requests = _total(window, API_REQUESTS)
    errors = _total(window, API_REQUESTS, lambda labels: labels.get("status", "").startswith("5"))
    search_p95, searches = histogram_quantile(0.95, window, SEARCH_LATENCY)
    inserts = _total(window, VECTOR_INDEX)
    insert_errors = _total(
        window, VECTOR_INDEX, lambda labels: labels.get("outcome") in VECTOR_INDEX_ERRORS
    )
    return Snapshot(
        api_p95=api_p95,
        api_requests=max(requests, api_count),
        api_error_rate=_ratio(errors, requests),
        memory_bytes=_gauge(current, RESIDENT_MEMORY),
        memory_limit=memory_limit,
        queue_oldest_age=_gauge(current, QUEUE_OLDEST_AGE),
        vector_inserts=inserts,
        vector_insert_error_rate=_ratio(insert_errors, inserts),
        search_p95=search_p95,
        searches=searches,
        managers=manager_states(current),
        mode=service_mode(current),
    )
