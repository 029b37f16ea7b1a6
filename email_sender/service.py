"""The composition root: builds a node's managers from Settings, starts and stops them in order.

A node runs the managers its role needs (``all`` runs every one). It writes a heartbeat row every
``node.heartbeat_interval`` seconds so that discovery can list every live node of the cluster.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from typing import Any

from email_sender import __version__, metrics
from email_sender.db import nodes
from email_sender.db.engine import Database
from email_sender.errors import EmailSenderError
from email_sender.events import EventBus, build_event_bus
from email_sender.managers import Manager, Registry, State
from email_sender.modes import ModeStore
from email_sender.settings import Settings

logger = logging.getLogger(__name__)

# Managers whose failure takes the node down rather than degrading it.
CRITICAL = ("database",)


class Service:
    """One node: its settings, its managers and the shared parts they use."""

    def __init__(self, settings: Settings, *, role: str | None = None) -> None:
        self.settings = settings
        self.role = role or settings.node.role
        self.node_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.started_at = time.time()
        self.db = Database(
            settings.database_url,
            pool_size=settings.database.pool_size,
            echo=settings.database.echo,
        )
        self.bus: EventBus = build_event_bus(settings.event_bus)
        self.modes = ModeStore(self.db)
        self.registry = Registry()
        self.registry.add(self.db)
        self.registry.add(self.bus)
        self._heartbeat: asyncio.Task[None] | None = None
        self.running = False
        # Routers that features add to the API app.
        self.extra_routers: list[Any] = []
        # Set by build_service for the roles that use them.
        self.outbox: Any = None
        self.suppressions: Any = None
        self.intake: Any = None
        self.search: Any = None

    def add(self, manager: Manager) -> None:
        self.registry.add(manager)

    def get(self, name: str) -> Any:
        """A manager by name, or None when this node does not run it."""
        return self.registry.get(name) if name in self.registry else None

    async def start(self) -> None:
        await self.registry.start()
        if self.registry.status("database").state == State.RUNNING:
            await self.modes.reload()
            await self._beat()
        self._heartbeat = asyncio.create_task(self._heartbeat_loop(), name="heartbeat")
        self.running = True
        self._export_states()
        logger.info(
            "node_started",
            extra={"node_id": self.node_id, "role": self.role, "managers": self.registry.names},
        )

    async def stop(self) -> None:
        self.running = False
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
            self._heartbeat = None
        try:
            await nodes.mark_stopped(self.db, self.node_id)
        except EmailSenderError:
            logger.warning("node_stop_unrecorded", extra={"node_id": self.node_id})
        await self.registry.stop()
        self._export_states()
        logger.info("node_stopped", extra={"node_id": self.node_id})

    async def __aenter__(self) -> Service:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # Health and discovery

    async def health(self) -> dict[str, Any]:
        """Liveness with a summary: ok, degraded (a manager is not running) or down."""
        await self.registry.refresh()
        self._export_states()
        managers = {status.name: status.as_dict() for status in self.registry.statuses()}
        states = {name: row["state"] for name, row in managers.items()}
        if any(states[name] != State.RUNNING for name in CRITICAL if name in states):
            status = "down"
        elif all(state == State.RUNNING for state in states.values()):
            status = "ok"
        else:
            status = "degraded"
        return {
            "status": status,
            "mode": self.modes.cached.value,
            "version": __version__,
            "node_id": self.node_id,
            "role": self.role,
            "uptime_seconds": round(time.time() - self.started_at, 3),
            "managers": managers,
        }

    async def readiness(self) -> dict[str, Any]:
        """Can this node do its work now? One check per dependency, each probed afresh."""
        checks = []
        for name in self.registry.names:
            manager = self.registry.get(name)
            started = time.perf_counter()
            try:
                health = await asyncio.wait_for(manager.health(), 5.0)
                ok = health.state == State.RUNNING
                detail, error = health.detail, health.last_error if not ok else None
            except Exception as exc:
                ok, detail, error = False, "probe failed", f"{type(exc).__name__}: {exc}"
            checks.append(
                {
                    "name": name,
                    "ok": ok,
                    "detail": detail,
                    "error": error,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                }
            )
        return {"ready": all(check["ok"] for check in checks), "checks": checks}

    async def discovery(self) -> dict[str, Any]:
        rows = await nodes.list_nodes(self.db, self.settings.node.stale_after)
        live = [row for row in rows if row["status"] == nodes.LIVE]
        metrics.nodes_live.set(len(live))
        return {"nodes": rows, "live": len(live), "this_node": self.node_id}

    async def restart(self) -> dict[str, Any]:
        """Re-probe dependencies, restart failed managers, drop stale nodes."""
        await self.registry.refresh()
        restarted = await self.registry.restart_failed()
        dropped = await nodes.drop_stale(self.db, self.settings.node.stale_after)
        await self._beat()
        self._export_states()
        logger.info("managers_restarted", extra={"restarted": restarted, "dropped": dropped})
        return {
            "restarted": restarted,
            "still_failed": [
                status.name for status in self.registry.statuses() if status.state == State.FAILED
            ],
            "dropped_nodes": dropped,
        }

    # Heartbeats

    def _node_row(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "role": self.role,
            "version": __version__,
            "managers": [
                {"name": status.name, "state": status.state.value}
                for status in self.registry.statuses()
            ],
            "started_at": self.started_at,
        }

    async def _beat(self) -> None:
        await nodes.beat(self.db, self._node_row())

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.node.heartbeat_interval)
            try:
                await self.registry.refresh()
                await self._beat()
                await self.modes.reload()
            except EmailSenderError as exc:
                logger.warning("heartbeat_failed", extra={"error": str(exc)})
            self._export_states()

    def _export_states(self) -> None:
        for status in self.registry.statuses():
            for state in State:
                metrics.manager_state.labels(status.name, state.value).set(
                    1 if status.state == state else 0
                )


def build_service(settings: Settings, *, role: str | None = None) -> Service:
    """A node with every manager its role runs, wired to the shared parts."""
    from email_sender.mail.intake import Intake
    from email_sender.mail.outbox import Outbox
    from email_sender.mail.suppression import SuppressionList

    service = Service(settings, role=role)
    service.outbox = Outbox(service.db, idempotency_retention=settings.mail.idempotency_retention)
    service.suppressions = SuppressionList(service.db)
    service.intake = Intake(service.outbox, service.bus, settings.mail)
    if service.role in ("all", "delivery"):
        _add_delivery(service)
    if service.role in ("all", "api", "vectors"):
        from email_sender.vectors.wiring import add_vectors

        # API nodes search; indexing runs where the role includes it.
        add_vectors(service, with_processor=service.role in ("all", "vectors"))
    return service


def _add_delivery(service: Service) -> None:
    from email_sender.mail.ratelimit import SharedTokenBucket
    from email_sender.mail.sink import CaptureSink
    from email_sender.mail.transport import SmtpTransport
    from email_sender.mail.worker import DeliveryManager
    from email_sender.settings import RelaySettings

    settings = service.settings
    depends_on: tuple[str, ...] = ("database", "event_bus")
    sink: CaptureSink | None = None
    if settings.uses_capture_sink:
        sink = CaptureSink(settings.smtp.capture_sink)
        service.add(sink)
        depends_on = (*depends_on, sink.name)

    def transport() -> SmtpTransport:
        relays = settings.smtp.relays
        if sink is not None:
            relays = [
                RelaySettings(url=f"smtp://{sink.host}:{sink.port}", tls="none", max_connections=8)
            ]
        smtp = SmtpTransport(relays, helo_name=settings.smtp.helo_name)
        # Relay limits must hold across every node, so they are kept in the database.
        rates = dict(zip(smtp.relays, (relay.rate_per_second for relay in relays), strict=True))
        smtp.rate_limiter = SharedTokenBucket(service.db, rates)
        return smtp

    delivery = DeliveryManager(
        settings.delivery,
        outbox=service.outbox,
        suppressions=service.suppressions,
        bus=service.bus,
        modes=service.modes,
        transport_factory=transport,
        depends_on=depends_on,
        node_id=service.node_id,
    )
    service.add(delivery)
    service.intake.listeners.append(delivery.wake)
