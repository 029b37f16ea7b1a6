"""Whether a webhook URL reaches into the service's own network.

A webhook must not post to loopback, private or link-local addresses (a cloud metadata endpoint,
the service's own admin port) unless the operator allows it. The host is checked twice: as
written when the subscription is made (every spelling of an IPv4 address that the C resolver
takes, such as ``2130706433``, ``127.1`` or ``0x7f000001``, counts as that address), and as
resolved right before each post, so a name that points inside is refused too.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

LOCAL_NAMES = ("localhost", "localhost.localdomain")
# Seconds a name may take to resolve before the post is given up (and retried later).
RESOLVE_TIMEOUT = 5.0

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def literal_address(host: str) -> Address | None:
    """The address a host written as a number stands for, else None (a name)."""
    host = host.strip("[]").rstrip(".")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        # The forms inet_aton takes beyond dotted quads: 127.1, 2130706433, 0x7f.1, 0.
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def is_local(address: Address) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)
    return not (mapped or address).is_global


def written_local(host: str) -> bool:
    """True when the host, as written, is a local name or a non-global address."""
    name = host.lower().rstrip(".")
    if name in LOCAL_NAMES or name.endswith(".localhost"):
        return True
    address = literal_address(name)
    return address is not None and is_local(address)


async def resolves_local(host: str, port: int) -> bool:
    """True when any address the host resolves to is local (OSError when it cannot resolve)."""
    if written_local(host):
        return True
    if literal_address(host) is not None:
        return False
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(RESOLVE_TIMEOUT):
        answers = await loop.getaddrinfo(host.rstrip("."), port, type=socket.SOCK_STREAM)
    return any(is_local(ipaddress.ip_address(str(info[4][0]).split("%")[0])) for info in answers)
