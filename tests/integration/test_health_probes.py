"""/health serves answers at most a second old: a load of health checks probes the managers
about once a second, not once per request, and a change shows within that second."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from email_sender.managers import Health, State
from email_sender.service import HEALTH_MAX_AGE, build_service
from tests.conftest import asgi_client, make_settings, wait_for


class Counted:
    """A manager that counts its health probes and says what it is told to."""

    name = "counted"
    depends_on: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.probes = 0
        self.state = State.RUNNING

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def health(self) -> Health:
        self.probes += 1
        return Health(self.state, "told so" if self.state != State.RUNNING else "")

    def info(self) -> dict[str, Any]:
        return {}


async def test_many_health_checks_share_one_round_of_probes(tmp_path: Path) -> None:
    # Heartbeats far apart: only /health probes here.
    settings = make_settings(tmp_path, None, **{"node.heartbeat_interval": 60.0,
                                                "embedder.provider": "hashing"})
    node = build_service(settings)
    counted = Counted()
    node.registry.add(counted)
    async with node, asgi_client(node) as http:
        loop = asyncio.get_running_loop()
        before, started = counted.probes, loop.time()
        for _ in range(40):  # one after the other: each would probe if nothing were shared
            assert (await http.get("/health")).status_code == 200
        answers = await asyncio.gather(*(http.get("/health") for _ in range(100)))
        assert {answer.status_code for answer in answers} == {200}
        rounds = counted.probes - before
        # A round per HEALTH_MAX_AGE at most, plus the one under way: never one per request.
        assert 1 <= rounds <= 2 + (loop.time() - started) / HEALTH_MAX_AGE, rounds

        counted.state = State.DEGRADED

        async def shown() -> bool:
            body = (await http.get("/health")).json()
            return bool(body["managers"]["counted"]["state"] == "degraded")

        started = loop.time()
        await wait_for(shown, timeout=5 * HEALTH_MAX_AGE, interval=0.05)
        assert loop.time() - started <= HEALTH_MAX_AGE + 0.5
        assert (await http.get("/health")).json()["status"] == "degraded"
