"""A real embedded node for end-to-end tests: ``email-sender serve`` in a subprocess, on free
ports, with its config file and data dir in a temp folder, a hashing embedder and an admin key."""

from __future__ import annotations

import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.conftest import free_port

START_TIMEOUT = 60.0


class ServedNode:
    """Write the config, start ``serve``, wait for /health; :meth:`stop` ends it by SIGTERM."""

    def __init__(self, root: Path, **sections: Any) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.config = root / "config.yaml"
        self.admin_key = secrets.token_urlsafe(24)
        self.port, self.metrics_port = free_port(), free_port()
        settings: dict[str, Any] = {
            "data_dir": str(self.data_dir),
            "server": {"host": "127.0.0.1", "port": self.port},
            "metrics": {"host": "127.0.0.1", "port": self.metrics_port},
            "embedder": {"provider": "hashing"},
            # Never the default 1025, which a developer's Mailpit may hold.
            "smtp": {"capture_sink": {"port": free_port()}},
            "security": {"api_keys": [{"name": "ops", "key": self.admin_key,
                                       "scopes": ["admin"]}]},
        }
        settings.update(sections)
        self.config.write_text(yaml.safe_dump(settings), encoding="utf-8")
        self.process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key}"}

    def start(self) -> None:
        log = (self.root / "serve.log").open("w", encoding="utf-8")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "email_sender", "serve", "--config", str(self.config)],
            stdout=log, stderr=subprocess.STDOUT, text=True,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"serve exited {self.process.returncode}: {self.output()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise AssertionError(f"the node did not come up in {START_TIMEOUT:.0f} s: {self.output()}")

    def output(self) -> str:
        path = self.root / "serve.log"
        return path.read_text(encoding="utf-8")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def send(self, count: int, timeout: float = 30.0) -> list[str]:
        """Send ``count`` emails and wait until each is sent and indexed; their ids."""
        ids = []
        for n in range(count):
            answer = httpx.post(
                f"{self.url}/api/v1/emails", headers=self.headers, timeout=10,
                json={"from": "ops@example.org", "to": [f"guest{n}@example.org"],
                      "subject": f"Invoice {n} for the spring tour",
                      "text": "The invoice for the concert hall is attached.",
                      "tags": ["invoice"]},
            )
            assert answer.status_code == 202, answer.text
            ids.append(answer.json()["id"])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = [
                httpx.get(f"{self.url}/api/v1/emails/{email_id}", headers=self.headers,
                          timeout=10).json()
                for email_id in ids
            ]
            if all(s["status"] == "sent" and s.get("vector_state") == "indexed" for s in states):
                return ids
            time.sleep(0.2)
        raise AssertionError(f"emails not sent and indexed within {timeout:.0f} s: {states}")
