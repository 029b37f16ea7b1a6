"""Serving the API and metrics apps: sockets bound up front, uvicorn in the service's loop.

Binding before anything starts lets a taken port fail fast with the port and its holder named.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn

from email_sender.errors import ConfigError
from email_sender.managers import Health, State
from email_sender.ports import bind, holder_of, is_loopback
from email_sender.service import Service

__all__ = ["ApiServer", "bind", "holder_of", "is_loopback"]

logger = logging.getLogger(__name__)

# Of server.shutdown_grace, the share requests in flight get to finish; the rest is for the
# managers behind them (delivery gives back its leases).
REQUEST_GRACE_SHARE = 0.5


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the CLI owns the signals for every server."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ApiServer:
    """The ``api`` manager: serves the API and metrics apps on pre-bound sockets.

    Worker nodes (no API) still serve their metrics; the manager is then named ``metrics``.
    It depends on no other manager: a node whose Redis, relay or even database is down must
    still answer ``/health`` (503 with what is failing) rather than accept and never answer.
    Added last, it starts after the others all the same.
    """

    def __init__(
        self,
        service: Service,
        *,
        depends_on: tuple[str, ...] = (),
        serve_api: bool = True,
        reuse_port: bool = False,
    ) -> None:
        settings = service.settings
        self.name = "api" if serve_api else "metrics"
        self.service = service
        self.depends_on = depends_on
        # One of several API workers on one port (see api/workers.py).
        self.reuse_port = reuse_port
        self.sockets: dict[str, socket.socket] = {}
        if serve_api:
            if not settings.security.api_keys and not is_loopback(settings.server.host):
                raise ConfigError(
                    f"server.host: {settings.server.host} is not a loopback address and no "
                    "security.api_keys are configured; add API keys or bind 127.0.0.1"
                )
            self.sockets["api"] = bind(
                settings.server.host, settings.server.port, what="API port", reuse_port=reuse_port
            )
        if settings.metrics.enabled:
            self.sockets["metrics"] = bind(
                settings.metrics.host, settings.metrics.port, what="metrics port"
            )
        self._addresses: dict[str, tuple[str, int]] = {
            which: (sock.getsockname()[0], sock.getsockname()[1])
            for which, sock in self.sockets.items()
        }
        self._servers: dict[str, _Server] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def port(self, which: str) -> int:
        return self._addresses[which][1]

    async def start(self) -> None:
        from email_sender.api.app import create_app, create_metrics_app

        for which, sock in list(self.sockets.items()):
            if sock.fileno() == -1:  # closed by a stop: started again, on the same port
                host, port = self._addresses[which]
                self.sockets[which] = bind(
                    host, port, what=f"{which} port", reuse_port=self.reuse_port and which == "api"
                )
        apps: dict[str, Any] = {}
        if "api" in self.sockets:
            apps["api"] = create_app(self.service)
        if "metrics" in self.sockets:
            apps["metrics"] = create_metrics_app(self.service)
        for which, app in apps.items():
            config = uvicorn.Config(
                app,
                log_config=None,
                access_log=False,
                lifespan="off",
                # Typed int, but only ever handed to asyncio.wait_for: a float is honoured.
                timeout_graceful_shutdown=(
                    self.service.settings.server.shutdown_grace * REQUEST_GRACE_SHARE  # type: ignore[arg-type]
                ),
            )
            server = _Server(config)
            self._servers[which] = server
            self._tasks.append(
                asyncio.create_task(server.serve(sockets=[self.sockets[which]]), name=which)
            )
        while not all(server.started for server in self._servers.values()):
            failed = [task for task in self._tasks if task.done()]
            if failed:
                failed[0].result()
                raise RuntimeError("the HTTP server stopped during start")
            await asyncio.sleep(0.01)  # uvicorn offers no event for "started"
        logger.info(
            "api_listening",
            extra={
                which: f"{sock.getsockname()[0]}:{sock.getsockname()[1]}"
                for which, sock in self.sockets.items()
            },
        )

    async def stop(self) -> None:
        """Stop accepting, let requests in flight finish, then close."""
        for server in self._servers.values():
            server.should_exit = True
        try:
            # uvicorn bounds this itself (timeout_graceful_shutdown); the registry bounds it too.
            await asyncio.gather(*self._tasks, return_exceptions=True)
        finally:
            self._tasks.clear()
            self._servers.clear()
            for sock in self.sockets.values():
                sock.close()

    async def health(self) -> Health:
        if not self._servers:
            return Health(State.STOPPED)
        down = [which for which, server in self._servers.items() if not server.started]
        if down or any(task.done() for task in self._tasks):
            return Health(State.FAILED, f"not serving: {', '.join(down) or 'stopped'}")
        return Health(
            State.RUNNING, ", ".join(f"{which} :{self.port(which)}" for which in self.sockets)
        )

    def info(self) -> dict[str, Any]:
        return {which: self.port(which) for which in self.sockets}
