"""The fault proxy itself, against a real echo server and the real SMTP test server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from email.message import EmailMessage

import aiosmtplib
import pytest

from tests.support.faultproxy import FaultProxy
from tests.support.smtp_server import SmtpTestServer


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(4096):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


@pytest.fixture
def proxy_to_echo(echo_port: int) -> Iterator[FaultProxy]:
    with FaultProxy("127.0.0.1", echo_port) as proxy:
        yield proxy


async def roundtrip(proxy: FaultProxy, payload: bytes, timeout: float = 5.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        writer.write(payload)
        await writer.drain()
        async with asyncio.timeout(timeout):
            return await reader.readexactly(len(payload))
    finally:
        writer.close()


async def test_pass_and_latency(proxy_to_echo: FaultProxy) -> None:
    assert await roundtrip(proxy_to_echo, b"hello") == b"hello"
    proxy_to_echo.latency(150)
    started = time.monotonic()
    assert await roundtrip(proxy_to_echo, b"slow") == b"slow"
    assert time.monotonic() - started >= 0.3  # 150 ms each way
    stats = proxy_to_echo.stats()
    assert stats.accepted == 2 and stats.bytes_up == 9 and stats.bytes_down == 9


async def test_refuse_closes_new_connections_then_recovers(proxy_to_echo: FaultProxy) -> None:
    proxy_to_echo.refuse()
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy_to_echo.port)
    async with asyncio.timeout(5):
        try:
            assert await reader.read(10) == b""
        except ConnectionResetError:
            pass
    writer.close()
    assert proxy_to_echo.stats().refused == 1
    proxy_to_echo.pass_through()
    assert await roundtrip(proxy_to_echo, b"back") == b"back"


async def test_hang_holds_bytes_until_released(proxy_to_echo: FaultProxy) -> None:
    proxy_to_echo.hang()
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy_to_echo.port)
    writer.write(b"stuck")
    await writer.drain()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            await reader.read(10)
    proxy_to_echo.pass_through()
    async with asyncio.timeout(5):
        assert await reader.readexactly(5) == b"stuck"
    writer.close()


async def test_cut_after_bytes_forwards_only_the_prefix(proxy_to_echo: FaultProxy) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy_to_echo.port)
    proxy_to_echo.cut(after_bytes=3)
    writer.write(b"abcdef")
    await writer.drain()
    async with asyncio.timeout(5):
        try:
            assert await reader.read(10) == b""  # the echo of "abc" is discarded
        except ConnectionResetError:
            pass
    writer.close()
    stats = proxy_to_echo.stats()
    assert stats.cuts == 1 and stats.bytes_up == 3 and stats.bytes_down == 0


async def test_hang_after_pattern_freezes_that_connection_until_released(
    proxy_to_echo: FaultProxy,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy_to_echo.port)
    proxy_to_echo.hang(after_pattern=b"|", times=1)
    writer.write(b"abc|def")
    await writer.drain()
    # The upstream got "abc|"; its echo and the rest are held.
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            await reader.read(10)
    stats = proxy_to_echo.stats()
    assert (stats.freezes, stats.bytes_up, stats.bytes_down) == (1, 4, 0)
    assert proxy_to_echo.mode == "pass"  # times=1: new connections pass
    assert await roundtrip(proxy_to_echo, b"other") == b"other"
    proxy_to_echo.pass_through()  # an explicit change thaws the frozen connection
    async with asyncio.timeout(5):
        assert await reader.readexactly(7) == b"abc|def"
    writer.close()


def _message(message_id: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "a@example.com"
    message["To"] = "b@example.com"
    message["Subject"] = "cut"
    message["Message-ID"] = message_id
    message.set_content("body")
    return message


async def test_cut_after_end_of_data_the_relay_accepts_but_the_client_never_hears(
    smtp_server: SmtpTestServer,
) -> None:
    with FaultProxy("127.0.0.1", smtp_server.port) as proxy:
        proxy.cut(after_pattern=b"\r\n.\r\n", times=1)
        with pytest.raises(aiosmtplib.SMTPServerDisconnected):
            await aiosmtplib.send(_message("<cut@example.com>"), hostname="127.0.0.1",
                                  port=proxy.port, start_tls=False, timeout=10)
        # The relay got the whole message and answered 250 into the void.
        async with asyncio.timeout(10):
            while smtp_server.accepted_count("<cut@example.com>") < 1:
                await asyncio.sleep(0.02)
        assert proxy.stats().cuts == 1 and proxy.mode == "pass"  # times=1: passes again
        await aiosmtplib.send(_message("<cut@example.com>"), hostname="127.0.0.1",
                              port=proxy.port, start_tls=False, timeout=10)
        assert smtp_server.accepted_count("<cut@example.com>") == 2


def test_route_keeps_user_path_and_query() -> None:
    proxy = FaultProxy("127.0.0.1", 5432)
    proxy._port = 40000  # not started: only the URL rewrite is under test
    assert proxy.route("postgresql+asyncpg://postgres@127.0.0.1:5432/test?x=1") == (
        "postgresql+asyncpg://postgres@127.0.0.1:40000/test?x=1"
    )
    assert proxy.route("redis://127.0.0.1:6379/15") == "redis://127.0.0.1:40000/15"
