"""A TCP fault proxy for tests: put it between the service and a real upstream, then break things.

It listens on 127.0.0.1 (a free port) in its own thread and event loop, so it works the same
for a service running in the test's loop and for a separate process. Each accepted connection
opens one connection to the upstream (an SMTP relay, PostgreSQL, Redis) and copies bytes both
ways. The mode can change at any time, from any thread:

``pass``     copy bytes as they come.
``latency``  hold every chunk ``latency_ms`` before passing it on, in both directions.
``refuse``   close each new connection at once (existing ones go on, unless dropped).
``cut``      cut connections mid-stream: at once, or after ``after_bytes`` client bytes, or
             right after the client sent ``after_pattern`` (e.g. SMTP's end of data,
             ``b"\\r\\n.\\r\\n"``).
             The bytes up to the trigger reach the upstream; whatever the upstream answers is
             discarded and the client's socket is closed, so the client never sees the reply.
             ``times`` bounds how many connections are cut before the proxy passes again.
``hang``     accept and never forward: every chunk, both ways, waits until the mode changes.
             With ``after_pattern``, a connection is frozen right after the client sent the
             pattern: the upstream gets it, its answer waits (a relay that took the message and
             never says 250). Frozen connections thaw at the next explicit mode change;
             ``times`` bounds how many are frozen before the proxy passes again.

    with FaultProxy("127.0.0.1", relay.port) as proxy:
        settings.relay_url = f"smtp://{proxy.address}"
        proxy.cut(after_pattern=b"\\r\\n.\\r\\n", times=1)
        ...
        assert proxy.stats().cuts == 1

Bounded: at most ``max_connections`` links, one pending chunk per direction (a held chunk
stops reading, so TCP back-pressure does the rest), and ``stop()`` joins the thread with a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

MODES = ("pass", "latency", "refuse", "cut", "hang")
_CHUNK = 65536


@dataclass(frozen=True)
class ProxyStats:
    accepted: int
    refused: int
    cuts: int
    freezes: int
    active: int
    bytes_up: int
    bytes_down: int


@dataclass(frozen=True)
class _Mode:
    name: str = "pass"
    latency_ms: float = 0.0
    after_bytes: int | None = None
    after_pattern: bytes | None = None
    times: int | None = None
    generation: int = 0


class _Link:
    """One client connection and its upstream connection."""

    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream = upstream
        self.severed = False
        self.frozen_at: int | None = None  # the thaw generation it was frozen in
        self.up_bytes_in_mode = 0
        self.mode_generation = -1
        self.tail = b""

    def close(self) -> None:
        for writer in (self.client, self.upstream):
            writer.transport.abort()


class FaultProxy:
    """A fault-injecting TCP proxy to one upstream. See the module docstring."""

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        listen_host: str = "127.0.0.1",
        max_connections: int = 200,
        connect_timeout: float = 5.0,
        reply_grace: float = 2.0,
    ) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.listen_host = listen_host
        self.max_connections = max_connections
        self.connect_timeout = connect_timeout
        # After a cut, how long the upstream side stays open for its reply (then it is closed).
        self.reply_grace = reply_grace
        self._lock = threading.Lock()
        self._mode = _Mode()
        self._accepted = 0
        self._refused = 0
        self._cuts = 0
        self._freezes = 0
        self._thaw_generation = 0
        self._bytes_up = 0
        self._bytes_down = 0
        self._links: set[_Link] = set()
        self._port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._server: asyncio.AbstractServer | None = None
        self._changed: asyncio.Event | None = None
        self._stopping: asyncio.Event | None = None

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10.0):
            raise RuntimeError("fault proxy did not start within 10 s")
        if self._start_error is not None:
            raise RuntimeError("fault proxy failed to start") from self._start_error
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop already ended
            loop.call_soon_threadsafe(self._begin_stop)
        thread.join(10.0)
        if thread.is_alive():
            raise RuntimeError("fault proxy thread did not stop within 10 s")
        self._loop = self._thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def address(self) -> str:
        return f"{self.listen_host}:{self._port}"

    def route(self, url: str) -> str:
        """``url`` with its host and port replaced by the proxy's (user, path, query kept)."""
        parts = urlsplit(url)
        userinfo, _, _ = parts.netloc.rpartition("@")
        netloc = f"{userinfo}@{self.address}" if userinfo else self.address
        return urlunsplit(parts._replace(netloc=netloc))

    # --- control (any thread) ------------------------------------------------------------

    @property
    def mode(self) -> str:
        with self._lock:
            return self._mode.name

    def pass_through(self) -> None:
        self._set(_Mode("pass"))

    def latency(self, milliseconds: float) -> None:
        self._set(_Mode("latency", latency_ms=float(milliseconds)))

    def refuse(self, *, drop_existing: bool = False) -> None:
        self._set(_Mode("refuse"))
        if drop_existing:
            self.drop_connections()

    def hang(self, *, after_pattern: bytes | None = None, times: int | None = None) -> None:
        """Hold every byte; or, with ``after_pattern``, freeze each connection right after it."""
        if after_pattern is not None and not after_pattern:
            raise ValueError("after_pattern must not be empty")
        self._set(_Mode("hang", after_pattern=after_pattern, times=times))

    def cut(
        self,
        *,
        after_bytes: int | None = None,
        after_pattern: bytes | None = None,
        times: int | None = None,
    ) -> None:
        """Cut connections (existing and new) at the trigger; without one, at once."""
        if after_pattern is not None and not after_pattern:
            raise ValueError("after_pattern must not be empty")
        self._set(_Mode("cut", after_bytes=after_bytes, after_pattern=after_pattern, times=times))
        if after_bytes is None and after_pattern is None:
            self.drop_connections(count_as_cuts=True)

    def drop_connections(self, *, count_as_cuts: bool = False) -> int:
        """Close every open connection now; return how many there were."""
        loop = self._loop
        if loop is None:
            return 0
        done = threading.Event()
        dropped: list[int] = []

        def drop_all() -> None:
            links = list(self._links)
            for link in links:
                link.severed = True
                link.close()
            if count_as_cuts:
                with self._lock:
                    self._cuts += len(links)
            dropped.append(len(links))
            done.set()

        loop.call_soon_threadsafe(drop_all)
        done.wait(5.0)
        return dropped[0] if dropped else 0

    def stats(self) -> ProxyStats:
        with self._lock:
            return ProxyStats(
                accepted=self._accepted,
                refused=self._refused,
                cuts=self._cuts,
                freezes=self._freezes,
                active=len(self._links),
                bytes_up=self._bytes_up,
                bytes_down=self._bytes_down,
            )

    def _set(self, mode: _Mode) -> None:
        with self._lock:
            self._thaw_generation += 1
            generation = self._mode.generation + 1
            self._mode = _Mode(
                mode.name, mode.latency_ms, mode.after_bytes, mode.after_pattern, mode.times,
                generation,
            )
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._wake)

    # --- the proxy's own loop ------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        finally:
            loop.close()

    async def _serve(self) -> None:
        self._changed = asyncio.Event()
        self._stopping = asyncio.Event()
        try:
            self._server = await asyncio.start_server(self._accept, self.listen_host, 0)
        except OSError as exc:
            self._start_error = exc
            self._ready.set()
            return
        self._port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stopping.wait()
        self._server.close()
        for link in list(self._links):
            link.severed = True
            link.close()
        self._wake()
        # Closed sockets end every pump by themselves; cancelling is only for a straggler.
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=5.0)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self._server.wait_closed()

    def _begin_stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()
            self._wake()

    def _is_stopping(self) -> bool:
        return self._stopping is not None and self._stopping.is_set()

    def _wake(self) -> None:
        # Every waiter holds the old event; a fresh one is armed for the next change.
        assert self._changed is not None
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _current(self) -> _Mode:
        with self._lock:
            return self._mode

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        mode = self._current()
        with self._lock:
            over_limit = len(self._links) >= self.max_connections
            if mode.name == "refuse" or over_limit:
                self._refused += 1
            else:
                self._accepted += 1
        if mode.name == "refuse" or over_limit:
            writer.transport.abort()
            return
        try:
            async with asyncio.timeout(self.connect_timeout):
                up_reader, up_writer = await asyncio.open_connection(
                    self.upstream_host, self.upstream_port
                )
        except (OSError, TimeoutError):
            writer.transport.abort()
            return
        link = _Link(writer, up_writer)
        self._links.add(link)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._pump_up(link, reader))
                group.create_task(self._pump_down(link, up_reader))
        except* (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            link.close()
            self._links.discard(link)

    def _held(self, link: _Link) -> bool:
        with self._lock:
            mode = self._mode
            return (mode.name == "hang" and mode.after_pattern is None) or (
                link.frozen_at == self._thaw_generation
            )

    async def _hold(self, link: _Link) -> _Mode:
        """Wait while the link is held (or for the latency); return the mode to act on."""
        while not self._is_stopping():
            assert self._changed is not None
            changed = self._changed  # taken before the check, so no change is missed
            if not self._held(link):
                break
            await changed.wait()
        mode = self._current()
        if mode.name == "latency" and mode.latency_ms > 0:
            await asyncio.sleep(mode.latency_ms / 1000)
        return mode

    async def _pump_up(self, link: _Link, reader: asyncio.StreamReader) -> None:
        """Client to upstream; this direction carries the cut and freeze triggers."""
        while not link.severed:
            chunk = await reader.read(_CHUNK)
            if not chunk:
                link.close()
                return
            while chunk:
                mode = await self._hold(link)
                if link.severed:
                    return
                end = self._trigger_end(link, mode, chunk)
                forward, chunk = (chunk, b"") if end is None else (chunk[:end], chunk[end:])
                if forward:
                    with self._lock:  # counted first: a reader may check as soon as it arrives
                        self._bytes_up += len(forward)
                    link.upstream.write(forward)
                    await link.upstream.drain()
                if end is not None and mode.name == "cut":
                    self._sever(link)
                    return
                if end is not None:
                    self._freeze(link)

    async def _pump_down(self, link: _Link, reader: asyncio.StreamReader) -> None:
        """Upstream to client; after a cut the upstream's answer is read and thrown away."""
        while True:
            if link.severed:
                # Give the upstream the time to answer what it got, then close it.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.reply_grace):
                        await reader.read(_CHUNK)
                link.close()
                return
            chunk = await reader.read(_CHUNK)
            if not chunk:
                link.close()
                return
            mode = await self._hold(link)
            if link.severed:
                continue
            if mode.name == "cut" and mode.after_bytes is None and mode.after_pattern is None:
                self._sever(link)
                continue
            with self._lock:
                self._bytes_down += len(chunk)
            link.client.write(chunk)
            await link.client.drain()

    def _trigger_end(self, link: _Link, mode: _Mode, chunk: bytes) -> int | None:
        """Where in ``chunk`` the mode's trigger is met (cut or freeze right after), or None."""
        triggered = mode.name == "cut" or (mode.name == "hang" and mode.after_pattern is not None)
        if not triggered:
            return None
        if link.mode_generation != mode.generation:
            link.mode_generation = mode.generation
            link.up_bytes_in_mode = 0
            link.tail = b""
        if mode.after_bytes is None and mode.after_pattern is None:
            return 0
        ends: list[int] = []
        if mode.after_bytes is not None:
            remaining = mode.after_bytes - link.up_bytes_in_mode
            if remaining <= len(chunk):
                ends.append(max(remaining, 0))
        if mode.after_pattern is not None:
            window = link.tail + chunk
            found = window.find(mode.after_pattern)
            if found >= 0:
                ends.append(found + len(mode.after_pattern) - len(link.tail))
            keep = len(mode.after_pattern) - 1  # a pattern may straddle two chunks
            link.tail = window[-keep:] if keep else b""
        if not ends:
            link.up_bytes_in_mode += len(chunk)
            return None
        end = min(ends)
        link.up_bytes_in_mode += end
        link.tail = b""
        return end

    def _freeze(self, link: _Link) -> None:
        with self._lock:
            link.frozen_at = self._thaw_generation
            self._freezes += 1
            self._spend_one_time()

    def _sever(self, link: _Link) -> None:
        """Close the client side now; the upstream side closes after its reply (or the grace)."""
        link.severed = True
        link.client.transport.abort()
        with self._lock:
            self._cuts += 1
            self._spend_one_time()

    def _spend_one_time(self) -> None:
        """Count down ``times``; at zero the proxy passes (frozen links stay frozen)."""
        mode = self._mode
        if mode.times is None:
            return
        left = mode.times - 1
        self._mode = (
            _Mode("pass", generation=mode.generation + 1)
            if left <= 0
            else _Mode(mode.name, 0.0, mode.after_bytes, mode.after_pattern, left, mode.generation)
        )
