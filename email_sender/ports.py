"""Listening sockets bound up front, so that a taken port fails at once with its holder named.

The API, the metrics app and the capture sink all bind here before any manager starts.
"""

from __future__ import annotations

import errno
import ipaddress
import socket

import psutil

from email_sender.errors import PortInUse


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


def bind(
    host: str, port: int, *, what: str = "port", reuse_port: bool = False, listen: bool = True
) -> socket.socket:
    """A listening, non-blocking TCP socket on ``host:port``; ``PortInUse`` names the holder.

    ``reuse_port``: other processes of this user may bind the same port with it too, and the
    kernel spreads new connections over those listening (the API workers). ``listen=False``
    only holds the port.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio turns Nagle off (TCP_NODELAY) only on connections of a
    # socket that says it is TCP; without it every answer waited ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            holder = holder_of(port)
            raise PortInUse(
                f"{what} {port} on {host} is already in use"
                + (f" by {holder}" if holder else "")
                + "; stop that process or choose another port",
                port=port,
            ) from exc
        raise PortInUse(f"cannot listen on {host}:{port}: {exc.strerror}", port=port) from exc
    if listen:
        sock.listen(2048)
    sock.setblocking(False)
    return sock
