"""docs/operations.md is executed: every block marked runnable works as written.

A marker is an HTML comment on the line before a ```bash fence:

- ``<!-- runnable: prelude -->`` the conventions block (E, B, M, AUTH, D, C), run before each block;
- ``<!-- runnable -->`` run against a live embedded node;
- ``<!-- runnable: stopped -->`` run after that node has stopped, against its data dir.

The node's addresses, admin key, data dir and config file reach the blocks through the variables
the conventions block reads (EMAIL_SENDER_URL, EMAIL_SENDER_METRICS_URL, EMAIL_SENDER_ADMIN_KEY,
EMAIL_SENDER_DATA_DIR, EMAIL_SENDER_CONFIG), with EMAIL_ID an email already sent and indexed.
Each block runs under ``bash -euo pipefail`` with a time limit, and ``curl`` there fails on an
HTTP error (``--fail-with-body``), so a wrong route or a refused request fails its block.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.served import ServedNode

RUNBOOK = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
MARKER = re.compile(r"^\s*<!--\s*runnable(?::\s*(?P<kind>[a-z]+))?\s*-->\s*$")
KINDS = ("live", "stopped", "prelude")
# Fewer than these means markers were lost: the test must not pass by running nothing.
MIN_LIVE_BLOCKS = 13
MIN_STOPPED_BLOCKS = 2
BLOCK_TIMEOUT = 120
CURL_WRAPPER = 'curl() { command curl --fail-with-body --show-error --max-time 60 "$@"; }\n'


@dataclass(frozen=True)
class Block:
    kind: str
    line: int
    heading: str
    code: str

    @property
    def name(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.heading.lower()).strip("-")
        return f"L{self.line}-{slug}"


def blocks(text: str) -> list[Block]:
    """Every marked block of the runbook, in order; a marker not before a bash fence raises."""
    lines = text.splitlines()
    found: list[Block] = []
    heading = "top"
    in_fence = False
    for index, line in enumerate(lines):
        if line.strip().startswith("```"):
            in_fence = not in_fence
        elif line.startswith("#") and not in_fence:
            heading = line.lstrip("#").strip()
        match = MARKER.match(line)
        if match is None:
            continue
        kind = match.group("kind") or "live"
        fence = lines[index + 1].strip() if index + 1 < len(lines) else ""
        if kind not in KINDS or fence != "```bash":
            raise ValueError(f"{RUNBOOK.name}:{index + 1}: a {kind!r} marker must come right "
                             "before a ```bash fence (kinds: live, stopped, prelude)")
        indent = len(lines[index + 1]) - len(lines[index + 1].lstrip())
        body: list[str] = []
        for code_line in lines[index + 2:]:
            if code_line.strip() == "```":
                break
            body.append(code_line[indent:])
        else:
            raise ValueError(f"{RUNBOOK.name}:{index + 2}: the block is never closed")
        found.append(Block(kind, index + 2, heading, "\n".join(body) + "\n"))
    return found


ALL = blocks(RUNBOOK.read_text(encoding="utf-8"))
[PRELUDE] = [block for block in ALL if block.kind == "prelude"]
LIVE = [block for block in ALL if block.kind == "live"]
STOPPED = [block for block in ALL if block.kind == "stopped"]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedNode]:
    served = ServedNode(tmp_path_factory.mktemp("runbook"))
    served.start()
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture(scope="module")
def email_id(node: ServedNode) -> str:
    return node.send(3)[0]


def run_block(block: Block, node: ServedNode, email_id: str) -> None:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "EMAIL_SENDER_URL": node.url,
        "EMAIL_SENDER_METRICS_URL": node.metrics_url,
        "EMAIL_SENDER_ADMIN_KEY": node.admin_key,
        "EMAIL_SENDER_DATA_DIR": str(node.data_dir),
        "EMAIL_SENDER_CONFIG": str(node.config),
        "EMAIL_ID": email_id,
    }
    script = CURL_WRAPPER + PRELUDE.code + block.code
    try:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script], cwd=node.root, env=env,
            capture_output=True, text=True, timeout=BLOCK_TIMEOUT, check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{block.name} ran over {BLOCK_TIMEOUT} s:\n{block.code}\n{exc.stdout!r}")
    assert done.returncode == 0, (
        f"{RUNBOOK.name}:{block.line} ({block.heading}) exited {done.returncode}\n"
        f"--- block\n{block.code}--- stdout\n{done.stdout[-3000:]}\n"
        f"--- stderr\n{done.stderr[-3000:]}"
    )


def test_the_runbook_keeps_its_runnable_blocks() -> None:
    assert len(LIVE) >= MIN_LIVE_BLOCKS, [block.name for block in LIVE]
    assert len(STOPPED) >= MIN_STOPPED_BLOCKS, [block.name for block in STOPPED]
    assert "EMAIL_SENDER_URL" in PRELUDE.code and "EMAIL_SENDER_CONFIG" in PRELUDE.code


def test_a_marker_must_precede_a_bash_block() -> None:
    with pytest.raises(ValueError, match="must come right before"):
        blocks("## x\n<!-- runnable -->\nsome text\n")
    with pytest.raises(ValueError, match="kinds"):
        blocks("## x\n<!-- runnable: later -->\n```bash\ntrue\n```\n")
    [block] = blocks("## Some part\n\n   <!-- runnable -->\n   ```bash\n   echo hi\n   ```\n")
    assert (block.kind, block.code, block.name) == ("live", "echo hi\n", "L4-some-part")


@pytest.mark.parametrize("block", LIVE, ids=[block.name for block in LIVE])
def test_live_block(block: Block, node: ServedNode, email_id: str) -> None:
    run_block(block, node, email_id)


@pytest.mark.parametrize("block", STOPPED, ids=[block.name for block in STOPPED])
def test_stopped_block(block: Block, node: ServedNode, email_id: str) -> None:
    node.stop()
    run_block(block, node, email_id)
