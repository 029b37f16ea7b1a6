"""Pytest fixtures for the support services; a conftest imports them (or lists this module in
``pytest_plugins``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.smtp_server import SmtpTestServer


@pytest.fixture
def smtp_server() -> Iterator[SmtpTestServer]:
    """A started SMTP test server on a free port, stopped after the test."""
    with SmtpTestServer() as server:
        yield server


@pytest.fixture
def smtp_server_factory() -> Iterator[Callable[..., SmtpTestServer]]:
    """Start more servers (with auth or TLS options); all are stopped after the test."""
    started: list[SmtpTestServer] = []

    def start(**options: Any) -> SmtpTestServer:
        server = SmtpTestServer(**options).start()
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.stop()
