"""Schemathesis against the service's own OpenAPI schema, on a served node.

The node (SQLite, the capture sink, every manager of role ``all``, the API served by uvicorn
as ``serve`` does) runs in a thread and event loop of its own on a free port. Schemathesis
generates valid and invalid requests from ``/openapi.json`` with a fixed seed and at most
``MAX_EXAMPLES`` per operation, and checks that none answers 5xx, that every status is one the
operation declares, and that every body matches its declared schema (errors included:
``{"error": {"code", "message", "details"}}``).

Left out: operations that switch the whole node (maintenance modes, manager restarts); after
them every other request would rightly answer 503.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, seed, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from email_sender.api.server import ApiServer
from email_sender.service import build_service
from tests.conftest import make_settings

MAX_EXAMPLES = 25
SEED = 20261121
SKIPPED_PATHS = r"^/api/v1/(maintenance|managers/discovery/restart)"


@schemathesis.serializer("message/rfc822")
def _raw_message(ctx: object, value: object) -> bytes:
    """The provider webhook takes raw mail: generated strings go as their UTF-8 bytes."""
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8", "surrogatepass")


@schemathesis.serializer("text/csv", "application/x-ndjson", "application/jsonl")
def _text_rows(ctx: object, value: object) -> bytes:
    """The contact import takes CSV or JSON lines: generated strings go as their UTF-8 bytes."""
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8", "surrogatepass")


class ServedNode:
    """A full node serving HTTP from a thread of its own, until ``stop()``."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = 0
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="fuzz-node", daemon=True)

    def start(self) -> ServedNode:
        self._thread.start()
        if not self._ready.wait(120):
            raise RuntimeError("the node did not start within 120 s")
        if self._error is not None:
            raise RuntimeError("the node failed to start") from self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)
        assert not self._thread.is_alive(), "the node did not stop within 60 s"

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            settings = make_settings(
                self.data_dir, f"sqlite+aiosqlite:///{self.data_dir / 'fuzz.db'}",
                **{"logging.level": "WARNING"},
            )
            node = build_service(settings)
            api = ApiServer(node)  # as ``serve`` adds it
            node.add(api)
            async with node:
                self.port = api.port("api")
                self._ready.set()
                await self._stop.wait()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            raise


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedNode]:
    node = ServedNode(tmp_path_factory.mktemp("fuzz")).start()
    yield node
    node.stop()


@pytest.fixture(scope="module")
def api_schema(served: ServedNode) -> schemathesis.BaseSchema:
    schema = schemathesis.openapi.from_url(f"http://127.0.0.1:{served.port}/openapi.json")
    # Valid requests and invalid ones: bad input must be a 4xx naming the field, never a 5xx.
    schema.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], deterministic=True
    )
    return schema.exclude(method="POST", path_regex=SKIPPED_PATHS)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@pytest.mark.timeout(300)  # ~30 operations x 25 examples, on a loaded machine too
@seed(SEED)
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_no_5xx_and_every_response_matches_the_schema(case: schemathesis.Case) -> None:
    case.call_and_validate(
        checks=[not_a_server_error, status_code_conformance, response_schema_conformance],
        timeout=30,
    )
