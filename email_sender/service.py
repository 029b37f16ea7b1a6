"""The composition root: builds a node's managers from Settings, starts and stops them in order.

A node runs the managers its role needs (``all`` runs every one). Its heartbeat task writes a
heartbeat row every ``node.heartbeat_interval`` seconds so that discovery can list every live
node of the cluster, and starts failed managers again as their backoff runs out, so a node whose
Redis or database comes up after it started heals by itself. Every step of a stop is bounded:
``server.shutdown_grace`` seconds in all, whatever state the node is in.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from email_sender import __version__, metrics
from email_sender.db import nodes
from email_sender.db.engine import Database
from email_sender.errors import EmailSenderError
from email_sender.events import EventBus, build_event_bus
from email_sender.mail.intake import Intake
from email_sender.mail.outbox import Outbox
from email_sender.mail.suppression import SuppressionList
from email_sender.managers import Manager, Registry, State, run_bounded
from email_sender.modes import ModeStore
from email_sender.outreach.contacts import ContactStore
from email_sender.outreach.lifecycle import Lifecycle
from email_sender.outreach.scheduler import Scheduler
from email_sender.outreach.segments import SegmentStore
from email_sender.outreach.sequences import SequenceStore
from email_sender.outreach.unsubscribe import Unsubscriber, list_unsubscribe_headers
from email_sender.settings import Settings

if TYPE_CHECKING:
    from email_sender.inbound.receiver import Receiver
    from email_sender.vectors.search import SearchService

logger = logging.getLogger(__name__)

# Managers whose failure takes the node down rather than degrading it.
CRITICAL = ("database",)
# What /health may spend probing managers; a slower one is reported by its last known state.
HEALTH_PROBE_BUDGET = 0.5
# /health probes the managers at most this often; requests meanwhile read the last answers, so a
# load of health checks costs one round of probes a second, not one per request.
HEALTH_MAX_AGE = 1.0
# What /health/ready may spend probing each dependency.
READY_PROBE_SECONDS = 5.0


class Hook(Protocol):
    """Something that runs beside the managers for the node's lifetime (a monitor, say)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Service:
    """One node: its settings, its managers and the shared parts they use."""

    search: SearchService | None
    inbound: Receiver | None

    def __init__(self, settings: Settings, *, role: str | None = None) -> None:
        self.settings = settings
        self.role = role or settings.node.role
        self.node_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.started_at = time.time()
        self._probed_at = -HEALTH_MAX_AGE  # monotonic time of the last round of manager probes
        self._probing: asyncio.Task[None] | None = None
        # What the manager state gauges show, by manager: they are written on a change only.
        self._exported_states: dict[str, State] = {}
        self.db = Database(
            settings.database_url,
            pool_size=settings.database.pool_size,
            echo=settings.database.echo,
        )
        self.bus: EventBus = build_event_bus(settings.event_bus)
        self.modes = ModeStore(self.db)
        self.registry = Registry(stop_timeout=settings.server.shutdown_grace, retry_max=30.0)
        self.registry.add(self.db)
        self.registry.add(self.bus)
        self.outbox = Outbox(self.db, idempotency_retention=settings.mail.idempotency_retention)
        self.suppressions = SuppressionList(self.db)
        self.contacts = ContactStore(self.db, Lifecycle(settings.outreach.lifecycle))
        self.segments = SegmentStore(self.db, self.contacts.lifecycle)
        self.intake = Intake(self.outbox, self.bus, settings.mail)
        secret = settings.outreach.unsubscribe_secret
        self.unsubscriber = (
            Unsubscriber(self.db, self.suppressions, self.contacts, self.bus,
                         secret.get_secret_value().encode())
            if secret is not None else None
        )
        links = _unsubscribe_headers(settings)
        self.sequences = SequenceStore(
            self.db, self.contacts.lifecycle, self.suppressions,
            contacted=settings.outreach.contacted_status, unsubscribe_links=links is not None,
        )
        # Every node can preview; the outreach_scheduler manager ticks it where delivery runs.
        self.scheduler = Scheduler(
            self.db, self.intake, self.contacts, self.suppressions, settings.outreach,
            unsubscribe=links, unsubscriber=self.unsubscriber,
        )
        # Set by build_service when the role searches (the API mounts the search routes then).
        self.search = None
        # Set by build_service: where received mail is stored (every API can take it).
        self.inbound = None
        self.hooks: list[Hook] = []
        self._heartbeat: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.running = False

    def add(self, manager: Manager) -> None:
        self.registry.add(manager)

    def add_hook(self, hook: Hook) -> None:
        """Run ``hook`` after the managers start and stop it before they stop (bounded)."""
        self.hooks.append(hook)

    def get(self, name: str) -> Any:
        """A manager by name, or None when this node does not run it."""
        return self.registry.get(name) if name in self.registry else None

    async def start(self) -> None:
        self._stopping = asyncio.Event()
        await self.registry.start()
        if self.registry.status("database").state == State.RUNNING:
            try:
                await self.modes.reload()
                await self._beat()
            except EmailSenderError as exc:
                logger.warning("heartbeat_failed", extra={"error": str(exc)})
        for hook in self.hooks:
            await run_bounded(hook.start(), self.registry.start_timeout, name="hook_start")
        self._heartbeat = asyncio.create_task(self._heartbeat_loop(), name="heartbeat")
        self.running = True
        self._export_states()
        logger.info(
            "node_started",
            extra={"node_id": self.node_id, "role": self.role, "managers": self.registry.names},
        )

    async def stop(self, timeout: float | None = None) -> None:
        """Stop within ``timeout`` seconds (``server.shutdown_grace`` by default).

        The heartbeat is told to stop by an event and given a moment; managers then stop in
        reverse order, each bounded, so nothing that ignores a cancellation can hold the node.
        """
        grace = self.settings.server.shutdown_grace if timeout is None else timeout
        deadline = time.monotonic() + grace

        def left(share: float = 1.0) -> float:
            return max(deadline - time.monotonic(), 0.0) * share

        self.running = False
        self._stopping.set()
        heartbeat, self._heartbeat = self._heartbeat, None
        if heartbeat is not None:
            # It returns at the stop event; one busy past its share is cancelled, not awaited.
            done, _ = await asyncio.wait({heartbeat}, timeout=left(0.2))
            if not done:
                heartbeat.cancel()
                logger.warning("heartbeat_abandoned", extra={"node_id": self.node_id})
            elif not heartbeat.cancelled() and heartbeat.exception() is not None:
                logger.error("heartbeat_crashed", extra={"error": repr(heartbeat.exception())})
        for hook in reversed(self.hooks):
            try:
                await run_bounded(hook.stop(), left(0.1), name="hook_stop")
            except Exception as exc:
                logger.warning("hook_stop_failed", extra={"error": f"{type(exc).__name__}: {exc}"})
        if self.registry.status("database").state == State.RUNNING:
            try:
                await run_bounded(nodes.mark_stopped(self.db, self.node_id), left(0.1),
                                  name="mark_stopped")
            except (EmailSenderError, TimeoutError):
                logger.warning("node_stop_unrecorded", extra={"node_id": self.node_id})
        await self.registry.stop(timeout=left())
        self._export_states()
        logger.info("node_stopped", extra={"node_id": self.node_id})

    async def __aenter__(self) -> Service:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # Health and discovery

    async def health(self) -> dict[str, Any]:
        """Liveness with a summary: ok, degraded (a manager is not running) or down.

        Answers within about ``HEALTH_PROBE_BUDGET`` seconds whatever the managers do, from
        answers at most ``HEALTH_MAX_AGE`` seconds old.
        """
        await self._probe_recent()
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
            "failing": {
                name: row["last_error"] or row["detail"] or row["state"]
                for name, row in managers.items()
                if row["state"] != State.RUNNING
            },
            "managers": managers,
        }

    async def _probe_recent(self) -> None:
        """Probe the managers unless a round ended within ``HEALTH_MAX_AGE``; concurrent callers
        wait on the same round."""
        if time.monotonic() - self._probed_at < HEALTH_MAX_AGE:
            return
        if self._probing is None or self._probing.done():
            self._probing = asyncio.create_task(self._probe_round(), name="health_probes")
        # Shielded: a caller that gives up does not cancel the round the others wait on.
        await asyncio.shield(self._probing)

    async def _probe_round(self) -> None:
        await self.registry.refresh(budget=HEALTH_PROBE_BUDGET)
        self._probed_at = time.monotonic()

    async def readiness(self) -> dict[str, Any]:
        """Can this node do its work now? One check per dependency, probed afresh, at once."""

        async def check(name: str) -> dict[str, Any]:
            status = self.registry.status(name)
            started = time.perf_counter()
            error: str | None
            if status.state == State.FAILED and status.last_error:
                ok, detail, error = False, "not started", status.last_error
            else:
                try:
                    health = await self.registry.probe(name, READY_PROBE_SECONDS)
                    ok = health.state == State.RUNNING
                    detail, error = health.detail, health.last_error if not ok else None
                except Exception as exc:
                    ok, detail, error = False, "probe failed", f"{type(exc).__name__}: {exc}"
            return {
                "name": name,
                "ok": ok,
                "detail": detail,
                "error": error,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            }

        checks = await asyncio.gather(*(check(name) for name in self.registry.names))
        return {"ready": all(check["ok"] for check in checks), "checks": list(checks)}

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

    # Heartbeats and healing

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

    async def _stopped_within(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for the stop event; True when the node is stopping."""
        try:
            async with asyncio.timeout(seconds):
                await self._stopping.wait()
        except TimeoutError:
            return False
        return True

    async def _heartbeat_loop(self) -> None:
        interval = self.settings.node.heartbeat_interval
        next_beat = time.monotonic() + interval
        while True:
            retry_in = self.registry.next_retry_in()
            wait = next_beat - time.monotonic()
            if retry_in is not None:
                wait = min(wait, retry_in)
            if await self._stopped_within(max(wait, 0.0)):
                return
            try:
                if self.registry.next_retry_in() == 0.0:
                    restarted = await self.registry.restart_due()
                    if restarted:
                        logger.info("managers_retried", extra={"managers": restarted})
                    if "database" in restarted:
                        next_beat = time.monotonic()  # the mode and the node row, at once
                if time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + interval
                    await self.registry.refresh()
                    self._probed_at = time.monotonic()
                    if self.registry.status("database").state == State.RUNNING:
                        await self._beat()
                        await self.modes.reload()
            except EmailSenderError as exc:
                logger.warning("heartbeat_failed", extra={"error": str(exc)})
            self._export_states()

    def _export_states(self) -> None:
        """Set the manager state gauges of the managers whose state changed since the last call.

        /health calls this on every request: unchanged states cost one comparison each, not a
        gauge write per manager and state.
        """
        for status in self.registry.statuses():
            if self._exported_states.get(status.name) == status.state:
                continue
            self._exported_states[status.name] = status.state
            for state in State:
                metrics.manager_state.labels(status.name, state.value).set(
                    1 if status.state == state else 0
                )


def build_service(settings: Settings, *, role: str | None = None) -> Service:
    """A node with every manager its role runs, wired to the shared parts."""
    from email_sender.looplag import LoopLagMonitor
    from email_sender.webhooks.dispatcher import WebhookDispatcher

    service = Service(settings, role=role)
    # Every node measures how late its event loop runs (email_sender_event_loop_lag_seconds).
    service.add_hook(LoopLagMonitor())
    # Every node posts the events it sees to the subscribed webhooks (a queue in SQL: an event
    # seen by several nodes is posted once).
    service.add(WebhookDispatcher(settings.webhooks, service.db, service.bus))
    if service.role in ("all", "delivery"):
        _add_delivery(service)
        if settings.outreach.scheduling:
            _add_outreach(service)
    if service.role in ("all", "api", "vectors"):
        from email_sender.vectors.wiring import add_vectors

        # API nodes search; indexing runs where the role includes it.
        add_vectors(service, with_processor=service.role in ("all", "vectors"))
    from email_sender.inbound.wiring import add_inbound

    # Classifying and indexing what comes in needs the vector managers.
    add_inbound(service, with_manager=service.role in ("all", "vectors"))
    if settings.alerts.enabled:
        _add_alerts(service)
    return service


def _add_alerts(service: Service) -> None:
    from email_sender.alerts.monitor import AlertMonitor
    from email_sender.alerts.snapshot import NodeFigures

    alerts = service.settings.alerts
    figures = NodeFigures(
        managers=service.registry, outbox=service.outbox, modes=service.modes,
        window=alerts.window, memory_limit=alerts.memory_limit,
    )
    # A hook, not a manager: it watches the managers and mails through the node's own intake.
    service.add_hook(AlertMonitor(alerts, figures=figures, intake=service.intake,
                                  node=service.node_id))


def _unsubscribe_headers(settings: Settings) -> Callable[[str], dict[str, str]] | None:
    outreach = settings.outreach
    if not outreach.unsubscribe_url or outreach.unsubscribe_secret is None:
        return None
    return functools.partial(
        list_unsubscribe_headers,
        base_url=outreach.unsubscribe_url,
        secret=outreach.unsubscribe_secret.get_secret_value().encode(),
        # Where mail comes back to us, a mail client may also unsubscribe by writing.
        mailto_domain=settings.inbound.verp_domain,
    )


def _add_outreach(service: Service) -> None:
    from email_sender.db.leases import Leases
    from email_sender.outreach.manager import OutreachScheduler

    service.add(
        OutreachScheduler(
            service.scheduler, Leases(service.db), owner=service.node_id,
            tick=service.settings.outreach.tick,
        )
    )


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
        # A taken sink port is the operator's to fix: fail the build, as a taken API port does.
        sink.reserve()
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

    return_path = None
    if settings.inbound.verp_domain and settings.inbound.verp_secret:
        from functools import partial

        from email_sender.inbound.verp import verp_address

        # Bounces come back to bounces+<signed email id>@verp_domain, matched without guessing.
        return_path = partial(
            verp_address,
            domain=settings.inbound.verp_domain,
            secret=settings.inbound.verp_secret.get_secret_value().encode(),
        )
    delivery = DeliveryManager(
        settings.delivery,
        outbox=service.outbox,
        suppressions=service.suppressions,
        bus=service.bus,
        modes=service.modes,
        transport_factory=transport,
        depends_on=depends_on,
        node_id=service.node_id,
        return_path=return_path,
    )
    service.add(delivery)
    service.intake.listeners.append(delivery.wake)
