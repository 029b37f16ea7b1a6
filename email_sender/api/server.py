"""Serving the API and metrics apps: sockets bound up front, uvicorn in the service's loop.

Binding before anything starts lets a taken port fail fast with the port and its holder named.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import socket
from collections.abc import Iterator
from typing import Any

import psutil
import uvicorn

from email_sender.errors import ConfigError, PortInUse
from email_sender.managers import Health, State
from email_sender.service import Service

logger = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def holder_of(port: int) -> str | None:
    """``name (pid N)`` of the process listening on ``port``, when the system tells."""
    try:
        connections = psutil.net_connections(kind="inet")
    except (psutil.AccessDenied, OSError):
        return None
    for connection in connections:
        if connection.laddr and connection.laddr.port == port and connection.status == "LISTEN":
            if connection.pid is None:
                return None
            try:
                return f"{psutil.Process(connection.pid).name()} (pid {connection.pid})"
            except psutil.Error:
                return f"pid {connection.pid}"
    return None


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio turns Nagle off (TCP_NODELAY) only on connections of a
    # socket that says it is TCP; without it every answer waited ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            holder = holder_of(port)
            raise PortInUse(
                f"port {port} on {host} is already in use"
                + (f" by {holder}" if holder else "")
                + "; stop that process or choose another port",
                port=port,
            ) from exc
        raise PortInUse(f"cannot listen on {host}:{port}: {exc.strerror}", port=port) from exc
    sock.listen(2048)
    sock.setblocking(False)
    return sock


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the CLI owns the signals for every server."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ApiServer:
    """The ``api`` manager: serves the API and metrics apps on pre-bound sockets.

    Worker nodes (no API) still serve their metrics; the manager is then named ``metrics``.
    """

    def __init__(
        self, service: Service, *, depends_on: tuple[str, ...], serve_api: bool = True
    ) -> None:
        settings = service.settings
        self.name = "api" if serve_api else "metrics"
        self.service = service
        self.depends_on = depends_on
        self.sockets: dict[str, socket.socket] = {}
        if serve_api:
            if not settings.security.api_keys and not is_loopback(settings.server.host):
                raise ConfigError(
                    f"server.host: {settings.server.host} is not a loopback address and no "
                    "security.api_keys are configured; add API keys or bind 127.0.0.1"
                )
            self.sockets["api"] = bind(settings.server.host, settings.server.port)
        if settings.metrics.enabled:
            self.sockets["metrics"] = bind(settings.metrics.host, settings.metrics.port)
        self._servers: dict[str, _Server] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def port(self, which: str) -> int:
        port: int = self.sockets[which].getsockname()[1]
        return port

    async def start(self) -> None:
        from email_sender.api.app import create_app, create_metrics_app

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
                timeout_graceful_shutdown=int(self.service.settings.server.shutdown_timeout),
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
            await asyncio.sleep(0.01)
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
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
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
