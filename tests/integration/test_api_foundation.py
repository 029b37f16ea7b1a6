"""The real app on a real database: every foundation endpoint, modes, auth and bad input."""

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from email_sender.api.app import create_app, create_metrics_app
from email_sender.db.schema import audit_log
from email_sender.service import Service, build_service
from email_sender.settings import ApiKeySettings
from tests.conftest import REDIS_URL, asgi_client, make_settings
from tests.support.faultproxy import FaultProxy


async def test_health_summarises_every_manager(client: httpx.AsyncClient) -> None:
    answer = await client.get("/health")
    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "ok"
    assert body["mode"] == "normal"
    assert set(body["managers"]) >= {"database", "event_bus"}
    assert body["managers"]["database"]["state"] == "running"
    assert answer.headers["x-request-id"]


async def test_ready_probes_each_dependency(client: httpx.AsyncClient) -> None:
    answer = await client.get("/health/ready")
    assert answer.status_code == 200
    checks = {check["name"]: check for check in answer.json()["checks"]}
    assert checks["database"]["ok"] is True
    assert checks["event_bus"]["ok"] is True


async def test_health_is_down_and_503_when_the_database_fails(
    service: Service, client: httpx.AsyncClient
) -> None:
    await service.db.stop()
    service.db.url = "sqlite+aiosqlite:////dev/null/cannot/be.db"
    answer = await client.get("/health")
    assert answer.status_code == 503
    assert answer.json()["status"] == "down"
    ready = await client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json()["ready"] is False


async def test_managers_status_and_discovery(service: Service, client: httpx.AsyncClient) -> None:
    status = (await client.get("/api/v1/managers/status")).json()
    names = {manager["name"] for manager in status["managers"]}
    assert {"database", "event_bus"} <= names
    database = next(m for m in status["managers"] if m["name"] == "database")
    assert database["info"]["backend"] in ("sqlite", "postgresql")
    discovery = (await client.get("/api/v1/managers/discovery")).json()
    assert discovery["this_node"] == service.node_id
    assert [node["node_id"] for node in discovery["nodes"]] == [service.node_id]
    assert discovery["nodes"][0]["status"] == "live"


async def test_restart_with_nothing_failed_restarts_nothing(client: httpx.AsyncClient) -> None:
    answer = await client.post("/api/v1/managers/discovery/restart")
    assert answer.status_code == 200
    assert answer.json() == {"restarted": [], "still_failed": [], "dropped_nodes": 0}


@pytest.mark.redis
async def test_restart_starts_a_failed_manager_and_what_it_blocked(
    tmp_path: Path, database_url: str
) -> None:
    redis_port = int(REDIS_URL.rsplit(":", 1)[1].split("/")[0])
    with FaultProxy("127.0.0.1", redis_port) as proxy:
        proxy.refuse()
        settings = make_settings(
            tmp_path, database_url,
            **{"event_bus.backend": "redis", "event_bus.redis_url": proxy.route(REDIS_URL)},
        )
        node = build_service(settings)
        node.registry.retry_initial = 3600.0  # only the operator's restart may start it again
        async with node, asgi_client(node) as http:
            assert node.registry.status("event_bus").state == "failed"
            # The managers that need the bus wait for it and are restarted with it.
            with_the_bus = [
                "event_bus", "webhooks", "email_sender", "outreach_scheduler", "inbound"
            ]
            still_down = (await http.post("/api/v1/managers/discovery/restart")).json()
            assert still_down["restarted"] == with_the_bus
            assert still_down["still_failed"] == with_the_bus

            proxy.pass_through()
            answer = await http.post("/api/v1/managers/discovery/restart")
            assert answer.status_code == 200
            assert answer.json() == {
                "restarted": with_the_bus, "still_failed": [], "dropped_nodes": 0
            }
            assert (await http.get("/health")).json()["status"] == "ok"


async def test_event_stats_and_purge(service: Service, client: httpx.AsyncClient) -> None:
    # Every worker held by a handler that waits: the events after those stay pending.
    workers = service.settings.event_bus.workers
    entered, release = asyncio.Semaphore(0), asyncio.Event()

    async def held(event: Any) -> None:
        entered.release()
        await release.wait()

    service.bus.subscribe("test.event", held)
    try:
        for n in range(workers + 3):
            assert await service.bus.publish("test.event", n=n)
        for _ in range(workers):
            async with asyncio.timeout(10):
                await entered.acquire()
        stats = (await client.get("/api/v1/events/stats")).json()
        assert stats["backend"] == "memory"
        assert stats["published"] >= workers + 3
        assert stats["backlog"] == 3
        purged = await client.post("/api/v1/events/purge")
        assert purged.status_code == 200
        assert purged.json()["purged"] == 3
        assert (await client.get("/api/v1/events/stats")).json()["backlog"] == 0
    finally:
        release.set()
        service.bus.unsubscribe("test.event", held)


async def test_read_only_mode_refuses_writes_and_keeps_reads(
    service: Service, client: httpx.AsyncClient
) -> None:
    answer = await client.post("/api/v1/maintenance/readonly", json={"reason": "restore"})
    assert answer.json()["mode"] == "read_only"
    assert answer.json()["reason"] == "restore"
    assert (await client.get("/api/v1/maintenance")).json()["mode"] == "read_only"
    refused = await client.post("/api/v1/emails", json={})
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "service_mode"
    assert refused.json()["error"]["details"]["mode"] == "read_only"
    assert (await client.get("/api/v1/managers/status")).status_code == 200
    assert (await client.get("/health")).json()["mode"] == "read_only"
    await client.post("/api/v1/maintenance/disable")
    assert (await client.get("/api/v1/maintenance")).json()["mode"] == "normal"


async def test_maintenance_closes_all_but_health_and_maintenance(
    service: Service, client: httpx.AsyncClient
) -> None:
    await client.post("/api/v1/maintenance/enable")
    for method, path in [("GET", "/api/v1/managers/status"), ("GET", "/api/v1/events/stats"),
                         ("POST", "/api/v1/events/purge")]:
        answer = await client.request(method, path)
        assert answer.status_code == 503, path
        assert answer.json()["error"]["details"]["mode"] == "maintenance"
    assert (await client.get("/health")).status_code == 200
    assert (await client.get("/api/v1/maintenance")).json()["mode"] == "maintenance"
    assert (await client.post("/api/v1/maintenance/disable")).status_code == 200
    assert (await client.get("/api/v1/managers/status")).status_code == 200


async def test_mode_changes_are_audited_and_persist_across_restart(
    service: Service, client: httpx.AsyncClient
) -> None:
    await client.post("/api/v1/maintenance/enable", json={"reason": "upgrade"})
    async with service.db.connect() as connection:
        rows = (await connection.execute(select(audit_log))).all()
    change = [row for row in rows if row.action == "mode_changed"][-1]
    assert change.details == {"from": "normal", "to": "maintenance", "reason": "upgrade"}
    assert change.actor == "local"
    assert change.request_id
    other = Service(service.settings)
    await other.start()
    try:
        assert (await other.health())["mode"] == "maintenance"
    finally:
        await other.stop()


KEYS = [
    ApiKeySettings(name="app", key="app-key", scopes=["send", "read"]),  # type: ignore[arg-type]
    ApiKeySettings(name="ops", key="ops-key", scopes=["admin"]),  # type: ignore[arg-type]
]


@pytest.fixture
async def secured(tmp_path: Path) -> Any:
    settings = make_settings(tmp_path, None, **{"security.api_keys": KEYS})
    node = Service(settings)
    await node.start()
    transport = httpx.ASGITransport(app=create_app(node))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        yield http
    await node.stop()


async def test_no_key_is_401_wrong_scope_is_403(secured: httpx.AsyncClient) -> None:
    missing = await secured.get("/api/v1/managers/status")
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "unauthorized"
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = await secured.get(
        "/api/v1/managers/status", headers={"Authorization": "Bearer nope"}
    )
    assert wrong.status_code == 401
    app_key = {"Authorization": "Bearer app-key"}
    assert (await secured.get("/api/v1/managers/status", headers=app_key)).status_code == 200
    forbidden = await secured.post("/api/v1/maintenance/enable", headers=app_key)
    assert forbidden.status_code == 403
    assert "'admin' scope" in forbidden.json()["error"]["message"]
    assert (await secured.get("/api/v1/maintenance", headers={"Authorization": "Bearer x"})
            ).status_code == 401
    ops = {"Authorization": "Bearer ops-key"}
    assert (await secured.post("/api/v1/maintenance/enable", headers=ops)).status_code == 200
    assert (await secured.post("/api/v1/maintenance/disable", headers=ops)).status_code == 200
    # Health stays open for probes.
    assert (await secured.get("/health")).status_code == 200


async def test_bad_requests_are_clear_4xx(client: httpx.AsyncClient) -> None:
    unknown = await client.get("/api/v1/nothing-here")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["message"] == "no route GET /api/v1/nothing-here"
    wrong_method = await client.delete("/health")
    assert wrong_method.status_code == 405
    malformed = await client.post(
        "/api/v1/maintenance/readonly", content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert malformed.status_code == 422
    assert "malformed JSON" in malformed.json()["error"]["message"]
    wrong_type = await client.post(
        "/api/v1/maintenance/readonly", content=b"reason=x",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert wrong_type.status_code == 415
    assert "application/json" in wrong_type.json()["error"]["message"]
    extra = await client.post("/api/v1/maintenance/readonly", json={"reasn": "typo"})
    assert extra.status_code == 422
    assert extra.json()["error"]["details"]["problems"] == [
        {"field": "reasn", "reason": "unknown field"}
    ]
    # None of these changed the mode.
    assert (await client.get("/api/v1/maintenance")).json()["mode"] == "normal"


async def test_oversized_bodies_are_413(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, None, **{"server.max_body_bytes": 2048})
    async with Service(settings) as node:
        transport = httpx.ASGITransport(app=create_app(node))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            big = await http.post(
                "/api/v1/maintenance/readonly", json={"reason": "x" * 5000}
            )
            assert big.status_code == 413
            assert "over the limit of 2048 bytes" in big.json()["error"]["message"]

            async def chunks():  # type: ignore[no-untyped-def]
                for _ in range(10):
                    yield b"x" * 1000

            streamed = await http.post(
                "/api/v1/maintenance/readonly", content=chunks(),
                headers={"content-type": "application/json"},
            )
            assert streamed.status_code == 413
            assert (await http.get("/api/v1/maintenance")).json()["mode"] == "normal"


async def test_blocked_ips_and_rate_limit(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, None,
        **{"security.blocked_ips": ["127.0.0.0/8"]},
    )
    async with Service(settings) as node:
        transport = httpx.ASGITransport(app=create_app(node), client=("127.0.0.9", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            answer = await http.get("/health")
            assert answer.status_code == 403
            assert answer.json()["error"]["code"] == "ip_blocked"
    settings = make_settings(
        tmp_path, None,
        **{"security.rate_limit.enabled": True, "security.rate_limit.burst": 3,
           "security.rate_limit.requests_per_second": 0.001},
    )
    async with Service(settings) as node:
        transport = httpx.ASGITransport(app=create_app(node))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            codes = [(await http.get("/health")).status_code for _ in range(5)]
            assert codes == [200, 200, 200, 429, 429]


async def test_metrics_expose_requests_managers_bus_and_memory(
    service: Service, client: httpx.AsyncClient
) -> None:
    # The registry is process-wide: counters are compared before and after, not by name.
    transport = httpx.ASGITransport(app=create_metrics_app(service))
    async with httpx.AsyncClient(transport=transport, base_url="http://m") as http:
        before = (await http.get("/metrics")).text
        await client.get("/health")
        await service.bus.publish("metric.test")
        text = (await http.get("/metrics")).text
    health_requests = {"method": "GET", "route": "/health", "status": "200"}
    assert sample(text, "email_sender_http_requests_total", **health_requests) == (
        sample(before, "email_sender_http_requests_total", **health_requests) or 0.0
    ) + 1
    assert sample(text, "email_sender_manager_state", manager="database", state="running") == 1.0
    assert sample(text, "email_sender_manager_state", manager="database", state="failed") == 0.0
    published = sample(before, "email_sender_events_published_total", type="metric.test") or 0.0
    assert sample(text, "email_sender_events_published_total", type="metric.test") == published + 1
    assert sample(text, "email_sender_events_backlog") == float(service.bus.backlog())
    assert (sample(text, "email_sender_process_resident_memory_bytes") or 0) > 10 * 2**20


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in a Prometheus scrape, or None when absent."""
    for family in text_string_to_metric_families(text):
        for item in family.samples:
            if item.name == name and item.labels == labels:
                return float(item.value)
    return None
