"""Every Prometheus metric of the service, in one place. Names start with ``email_sender_``.

Metrics live in their own registry so that tests and several apps in one process stay apart.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import psutil
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

# HTTP API
http_requests = Counter(
    "email_sender_http_requests_total",
    "HTTP requests answered, by route template, method and status code.",
    ["route", "method", "status"],
    registry=REGISTRY,
)
http_request_duration = Histogram(
    "email_sender_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template and method.",
    ["route", "method"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)

# Each request's two series, by route template, method and status: a ``labels()`` look-up takes
# the metric's lock and checks every label value, and every request makes two; a dict hit does
# neither. Bounded: the methods come from clients.
_http_series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
_HTTP_SERIES_KEPT = 10_000


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    """Count one answered request and its duration."""
    key = (route, method, status)
    series = _http_series.get(key)
    if series is None:
        series = (
            http_requests.labels(route, method, str(status)),
            http_request_duration.labels(route, method),
        )
        if len(_http_series) < _HTTP_SERIES_KEPT:
            _http_series[key] = series
    series[0].inc()
    series[1].observe(seconds)


# Managers: 1 for the manager's current state, 0 for the others.
manager_state = Gauge(
    "email_sender_manager_state",
    "Manager state (1 = the manager is in this state).",
    ["manager", "state"],
    registry=REGISTRY,
)
service_mode = Gauge(
    "email_sender_service_mode",
    "Service mode (1 = the service is in this mode).",
    ["mode"],
    registry=REGISTRY,
)
nodes_live = Gauge("email_sender_nodes_live", "Nodes with a fresh heartbeat.", registry=REGISTRY)

# Event bus
events_published = Counter(
    "email_sender_events_published_total", "Events published.", ["type"], registry=REGISTRY
)
events_delivered = Counter(
    "email_sender_events_delivered_total",
    "Event deliveries to subscribers.",
    ["type"],
    registry=REGISTRY,
)
events_dropped = Counter(
    "email_sender_events_dropped_total",
    "Events dropped: buffer full past the publish timeout, or purged.",
    ["reason"],
    registry=REGISTRY,
)
events_handler_errors = Counter(
    "email_sender_events_handler_errors_total",
    "Subscriber handlers that raised.",
    ["type"],
    registry=REGISTRY,
)
events_backlog = Gauge(
    "email_sender_events_backlog", "Events waiting for a worker.", registry=REGISTRY
)

# Delivery
emails_accepted = Counter(
    "email_sender_emails_accepted_total", "Emails committed to the outbox.", registry=REGISTRY
)
emails_rejected = Counter(
    "email_sender_emails_rejected_total",
    "Emails refused at accept time, by reason code.",
    ["reason"],
    registry=REGISTRY,
)
delivery_attempts = Counter(
    "email_sender_delivery_attempts_total",
    "SMTP delivery attempts by relay and outcome (sent, deferred, failed).",
    ["relay", "outcome", "reply_class"],
    registry=REGISTRY,
)
delivery_duration = Histogram(
    "email_sender_delivery_duration_seconds",
    "Time of one SMTP exchange, by relay.",
    ["relay"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
delivery_latency = Histogram(
    "email_sender_delivery_latency_seconds",
    "Time from accept to sent, retries included.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
    registry=REGISTRY,
)
delivery_leases_lost = Counter(
    "email_sender_delivery_leases_lost_total",
    "Emails a worker gave up because its lease on them was lost before it could send.",
    registry=REGISTRY,
)
delivery_uncertain = Counter(
    "email_sender_delivery_uncertain_total",
    "Sends cut after the message data went out, before the relay answered: retried, so the "
    "recipient may get a second copy.",
    registry=REGISTRY,
)
delivery_outcomes_unrecorded = Counter(
    "email_sender_delivery_outcomes_unrecorded_total",
    "Delivery outcomes that could not be written after retries (the email is tried again).",
    registry=REGISTRY,
)
emails_suppressed = Counter(
    "email_sender_emails_suppressed_total",
    "Emails not sent because a recipient is suppressed.",
    registry=REGISTRY,
)
queue_depth = Gauge(
    "email_sender_queue_depth", "Emails in the outbox by status.", ["status"], registry=REGISTRY
)
queue_oldest_age = Gauge(
    "email_sender_queue_oldest_age_seconds",
    "Age of the oldest email due for delivery and not yet sent.",
    registry=REGISTRY,
)

# Vectors
vector_index_total = Counter(
    "email_sender_vector_index_total",
    "Emails indexed into the vector store, by outcome.",
    ["outcome"],
    registry=REGISTRY,
)
vector_backlog = Gauge(
    "email_sender_vector_backlog", "Emails waiting to be indexed.", registry=REGISTRY
)
vector_search_duration = Histogram(
    "email_sender_vector_search_duration_seconds",
    "Semantic search time (embedding + vector query).",
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
vector_cache = Counter(
    "email_sender_vector_cache_total",
    "Query-embedding cache look-ups by result (hit, miss).",
    ["result"],
    registry=REGISTRY,
)
embedder_errors = Counter(
    "email_sender_embedder_errors_total",
    "Embedder calls that failed, by kind (rate_limited, server_error, unavailable).",
    ["kind"],
    registry=REGISTRY,
)


class ProcessCollector(Collector):
    """Resident memory, CPU time, open files and uptime of this process."""

    def __init__(self) -> None:
        self._process = psutil.Process(os.getpid())
        self._started = time.time()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._process.oneshot():
            memory = self._process.memory_info()
            cpu = self._process.cpu_times()
            files = self._process.num_fds() if hasattr(self._process, "num_fds") else 0
        yield GaugeMetricFamily(
            "email_sender_process_resident_memory_bytes", "Resident memory.", value=memory.rss
        )
        yield GaugeMetricFamily(
            "email_sender_process_cpu_seconds", "CPU time used.", value=cpu.user + cpu.system
        )
        yield GaugeMetricFamily("email_sender_process_open_fds", "Open file descriptors.", files)
        yield GaugeMetricFamily(
            "email_sender_uptime_seconds", "Seconds since start.", time.time() - self._started
        )


REGISTRY.register(ProcessCollector())

# Event loop (see looplag.py): how late a short timer fires; late means the loop was held.
event_loop_lag = Histogram(
    "email_sender_event_loop_lag_seconds",
    "How late the event loop woke a task that slept a short interval.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)

# Inbound mail

inbound_messages = Counter(
    "email_sender_inbound_messages_total",
    "Messages received, by door (smtp, imap, webhook) and what they were "
    "(reply, auto_reply, out_of_office, bounce, complaint, other, duplicate, refused).",
    ["via", "kind"],
    registry=REGISTRY,
)
replies_classified = Counter(
    "email_sender_replies_classified_total",
    "Replies classified, by intent and by the layer that decided.",
    ["intent", "layer"],
    registry=REGISTRY,
)
webhook_attempts = Counter(
    "email_sender_webhook_attempts_total",
    "Webhook POSTs by outcome: delivered, retried (to be tried again), failed (for good), "
    "lease_lost (not recorded: another node took the delivery over).",
    ["outcome"],
    registry=REGISTRY,
)
