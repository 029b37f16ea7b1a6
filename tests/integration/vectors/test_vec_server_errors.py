"""ServerVectorStore against real sockets that fail: refused, too slow, wrong credentials."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from email_sender.errors import (
    VectorStoreAuthError,
    VectorStoreConnectionRefused,
    VectorStoreTimeout,
)
from email_sender.vectors.server import ServerVectorStore


class _Handler(BaseHTTPRequestHandler):
    status = 200
    delay = 0.0

    def do_GET(self) -> None:
        time.sleep(self.delay)
        body = b'{"status": {"error": "Must provide an API key"}, "time": 0}'
        try:
            self.send_response(self.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the client gave up first: that is the point of the slow server

    def log_message(self, format: str, *args: object) -> None:
        return None


def _serve(status: int, delay: float = 0.0) -> Iterator[str]:
    handler = type("Handler", (_Handler,), {"status": status, "delay": delay})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def unauthorised_server() -> Iterator[str]:
    yield from _serve(401)


@pytest.fixture
def slow_server() -> Iterator[str]:
    yield from _serve(200, delay=3.0)


async def test_connection_refused_names_the_url(unused_tcp_port: int) -> None:
    url = f"http://127.0.0.1:{unused_tcp_port}"
    store = ServerVectorStore(url, timeout=2)

    with pytest.raises(VectorStoreConnectionRefused, match="is it running") as caught:
        await store.list_collections()
    await store.close()

    assert url in str(caught.value)
    assert caught.value.__cause__ is not None


async def test_wrong_api_key_is_an_auth_error(unauthorised_server: str) -> None:
    store = ServerVectorStore(unauthorised_server, timeout=2)

    with pytest.raises(VectorStoreAuthError, match=r"HTTP 401\): check qdrant.api_key") as caught:
        await store.collection_info("emails")
    await store.close()

    assert unauthorised_server in str(caught.value)


async def test_slow_server_is_a_timeout(slow_server: str) -> None:
    store = ServerVectorStore(slow_server, timeout=1)

    with pytest.raises(VectorStoreTimeout, match="did not answer within 1s") as caught:
        await store.list_collections()
    await store.close()

    assert slow_server in str(caught.value)
