"""Vector migration with proof: round trips between real stores, verify catching each kind of
difference and --fix repairing it, a migration killed with SIGKILL and resumed, and refusals.

Sources are Qdrant Edge shards on tmp_path and qdrant-client local-mode folders; the data are
seeded random vectors with email-like payloads. Checksums are over what each store holds (Edge
normalises Cosine vectors), so every comparison is stored against stored.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from email_sender.cli_ops import vectors_ops_commands
from email_sender.errors import Conflict, DimensionMismatch
from email_sender.ops.jsonl import JsonlStore
from email_sender.ops.migrate import migrate
from email_sender.ops.verify import verify
from email_sender.vectors.edge import EdgeVectorStore
from email_sender.vectors.server import ServerVectorStore
from email_sender.vectors.sparse import TextAnalyser
from email_sender.vectors.store import Point, VectorStore

CLI = [sys.executable, "-m", "email_sender"]
ENV = {**os.environ, "CI": "true"}
DIM = 32
INDEXES = {"email_id": "keyword", "tags": "keyword", "to": "keyword", "created_at": "float"}
TAGS = ["invoice", "booking", "newsletter", "reminder", "contract"]
STATUSES = ["queued", "sent", "deferred", "failed"]


def email_points(count: int, seed: int = 7, dim: int = DIM) -> list[Point]:
    """Points shaped like the service's email points: a UUID, a vector, the usual payload."""
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(count, dim)).astype(np.float32)
    points = []
    for n in range(count):
        pid = str(uuid.UUID(int=int(rng.integers(0, 2**62)) << 64 | n))
        points.append(Point(pid, vectors[n], {
            "email_id": pid,
            "direction": "outbound",
            "from": "bookings@venue.example",
            "to": [f"artist{n % 37}@example.org"],
            "subject": f"Offer {n}: dates for the autumn tour — 🎸 {int(rng.integers(1, 99))}",
            "tags": sorted({TAGS[n % 5], TAGS[(n * 3) % 5]}),
            "campaign": None if n % 4 else f"autumn-{n % 3}",
            "status": STATUSES[n % 4],
            "created_at": round(1_700_000_000 + n * 61.123, 3),
            "embedding_model": "hashing-32",
        }))
    return points


async def fill(store: VectorStore, name: str, points: list[Point],
               indexes: dict[str, str] | None = None, distance: str = "Cosine") -> None:
    await store.ensure_collection(name, DIM, distance, INDEXES if indexes is None else indexes)
    for start in range(0, len(points), 500):
        await store.upsert(name, points[start : start + 500], wait=True)


async def edge_store_with(path: Path, points: list[Point]) -> None:
    """An Edge store at ``path`` holding ``points`` in "emails", closed for another process."""
    store = EdgeVectorStore(path)
    await fill(store, "emails", points)
    await store.close()


def runner_app() -> typer.Typer:
    app = typer.Typer()
    app.command("noop")(lambda: None)  # two commands keep the subcommand names in the CLI
    vectors_ops_commands(app)
    return app


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "vectors", *args], capture_output=True, text=True,
                          timeout=timeout, env=ENV)


async def test_edge_to_jsonl_to_edge_keeps_every_checksum(tmp_path: Path) -> None:
    source = EdgeVectorStore(tmp_path / "a")
    await fill(source, "emails", email_points(700))
    await fill(source, "task_vectors", email_points(90, seed=8), {"created_at": "float"})
    export = JsonlStore(tmp_path / "export.jsonl.gz")
    first = await migrate(source, export, batch_size=128, state_path=tmp_path / "s1.json")
    await export.close()
    assert first.copied == 790
    exported = JsonlStore(tmp_path / "export.jsonl.gz")
    target = EdgeVectorStore(tmp_path / "b")
    await migrate(exported, target, batch_size=100, state_path=tmp_path / "s2.json")
    report = await verify(source, target)
    assert report.identical, report.as_dict()
    from_file = await verify(exported, target)
    assert from_file.identical
    for result, via_file in zip(report.collections, from_file.collections, strict=True):
        assert result.source_digest == result.target_digest == via_file.source_digest
    info = await target.collection_info("emails")
    assert (info.dimension, info.distance, info.payload_indexes) == (DIM, "Cosine", INDEXES)
    assert not (tmp_path / "s1.json").exists()  # done: the progress file is gone
    for store in (source, exported, target):
        await store.close()


async def test_edge_to_edge_and_local_to_edge_are_identical(tmp_path: Path) -> None:
    edge = EdgeVectorStore(tmp_path / "edge")
    await fill(edge, "emails", email_points(600), distance="Dot")
    copy = EdgeVectorStore(tmp_path / "copy")
    report = await migrate(edge, copy, ["emails"], batch_size=64, state_path=tmp_path / "s.json")
    assert [c.copied for c in report.collections] == [600]
    check = await verify(edge, copy)
    assert check.identical and check.collections[0].target_points == 600

    local = ServerVectorStore(path=tmp_path / "local")
    await fill(local, "emails", email_points(400, seed=3))
    from_local = EdgeVectorStore(tmp_path / "from-local")
    await migrate(local, from_local, batch_size=50, state_path=tmp_path / "l.json")
    result = await verify(local, from_local)
    assert result.identical, result.as_dict()
    assert result.collections[0].source_digest == result.collections[0].target_digest
    for store in (edge, copy, local, from_local):
        await store.close()


async def test_verify_names_each_difference_and_fix_repairs_them(tmp_path: Path) -> None:
    points = email_points(300)
    source = EdgeVectorStore(tmp_path / "a")
    await fill(source, "emails", points)
    target = EdgeVectorStore(tmp_path / "b")
    # The target lacks the "tags" index, one point, and has one payload and one vector changed.
    await fill(target, "emails", [], {k: v for k, v in INDEXES.items() if k != "tags"})
    stored = [p async for batch in source.scroll("emails") for p in batch]
    await target.upsert("emails", stored)
    deleted, repaid, bent = stored[10].id, stored[20], stored[30]
    await target.delete("emails", [deleted])
    await target.upsert("emails", [Point(repaid.id, repaid.vector,
                                         {**repaid.payload, "status": "cancelled"})])
    vector = np.array(bent.vector, dtype=np.float32)
    vector[5] += 0.25
    await target.upsert("emails", [Point(bent.id, vector, bent.payload)])
    extra = email_points(1, seed=99)[0]
    await target.upsert("emails", [extra])

    report = await verify(source, target)
    found = report.collections[0]
    assert not report.identical
    assert found.missing == [deleted]
    assert found.extra == [extra.id]
    assert found.payload_differs == [repaid.id] and found.vector_differs == [bent.id]
    failed = {check.name for check in found.checks if not check.ok}
    assert failed == {"payload indexes", "points", "digest"}  # one missing, one extra: counts equal
    assert found.source_digest != found.target_digest

    fixed = await verify(source, target, fix=True, batch_size=2)
    assert fixed.fixes is not None and fixed.fixes[0].recopied == 3
    assert fixed.fixes[0].indexes_created == ["tags"]
    after = fixed.final.collections[0]
    # Extras are reported, never deleted: the stores still differ by exactly that point.
    assert (after.missing, after.vector_differs, after.payload_differs) == ([], [], [])
    assert after.extra == [extra.id] and not fixed.identical
    assert (await target.collection_info("emails")).payload_indexes == INDEXES
    await target.delete("emails", [extra.id])
    assert (await verify(source, target)).identical
    for store in (source, target):
        await store.close()


def test_cli_verify_fix_exit_codes_and_json(tmp_path: Path) -> None:
    gone = email_points(120)[5].id

    async def prepare() -> None:
        source = EdgeVectorStore(tmp_path / "a")
        await fill(source, "emails", email_points(120))
        target = EdgeVectorStore(tmp_path / "b")
        await migrate(source, target, state_path=tmp_path / "s.json")
        await target.delete("emails", [gone])
        await source.close()
        await target.close()

    asyncio.run(prepare())
    app, runner = runner_app(), CliRunner()
    uris = ["--from", f"edge://{tmp_path / 'a'}", "--to", f"edge://{tmp_path / 'b'}"]
    differs = runner.invoke(app, ["verify", *uris])
    assert differs.exit_code == 1
    assert f"missing: {gone}" in differs.output and "❌ emails points: 1 missing" in differs.output
    repaired = runner.invoke(app, ["verify", *uris, "--fix", "--json"])
    body = json.loads(repaired.output)
    assert repaired.exit_code == 0 and body["identical"] is True
    assert body["fixes"][0]["recopied"] == 1 and body["collections"][0]["missing"] == [gone]
    clean = runner.invoke(app, ["verify", *uris])
    assert clean.exit_code == 0 and "✅ source and target are identical" in clean.output


def test_export_and_import_commands_round_trip(tmp_path: Path) -> None:
    asyncio.run(edge_store_with(tmp_path / "a", email_points(150)))
    app, runner = runner_app(), CliRunner()
    export_uri = f"jsonl://{tmp_path / 'out.jsonl'}"
    exported = runner.invoke(app, ["export", "--from", f"edge://{tmp_path / 'a'}",
                                   "--to", export_uri, "--collection", "emails"])
    assert exported.exit_code == 0, exported.output
    lines = (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 151 and json.loads(lines[0])["points_count"] == 150
    imported = runner.invoke(app, ["import", "--from", export_uri,
                                   "--to", f"edge://{tmp_path / 'c'}", "--json"])
    assert imported.exit_code == 0, imported.output
    assert json.loads(imported.output)["verify"]["identical"] is True


def test_migration_killed_midway_resumes_where_it_stopped(tmp_path: Path) -> None:
    total = 6000
    asyncio.run(edge_store_with(tmp_path / "a", email_points(total)))
    # Into an existing collection, edge → edge goes page by page (a new one is a file copy).
    asyncio.run(edge_store_with(tmp_path / "b", []))
    state = tmp_path / "progress.json"
    args = ["migrate", "--from", f"edge://{tmp_path / 'a'}", "--to", f"edge://{tmp_path / 'b'}",
            "--batch-size", "20", "--state", str(state)]
    process = subprocess.Popen([*CLI, "vectors", *args], env=ENV,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    copied_at_kill = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if state.exists():
            try:
                copied_at_kill = json.loads(state.read_text())["collections"]["emails"]["copied"]
            except (ValueError, KeyError):
                copied_at_kill = 0
            if copied_at_kill >= 400:
                break
        time.sleep(0.02)
    assert process.poll() is None, "the migration ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()
    process.stderr.close()
    recorded = json.loads(state.read_text())["collections"]["emails"]["copied"]
    assert 400 <= recorded < total

    resumed = run_cli(*args, "--resume", "--validate", "--json")
    assert resumed.returncode == 0, resumed.stderr
    body = json.loads(resumed.stdout)
    outcome = body["migration"]["collections"][0]
    assert body["migration"]["resumed"] is True
    assert outcome["skipped_as_done"] >= recorded and outcome["restarted"] is None
    assert outcome["copied"] == total - outcome["skipped_as_done"]
    assert body["verify"]["identical"] is True and not state.exists()


async def test_dimension_mismatch_is_refused_naming_both_sizes(tmp_path: Path) -> None:
    source = EdgeVectorStore(tmp_path / "a")
    await fill(source, "emails", email_points(20))
    target = EdgeVectorStore(tmp_path / "b")
    await target.ensure_collection("emails", 16, "Cosine")
    with pytest.raises(DimensionMismatch) as refused:
        await migrate(source, target, state_path=tmp_path / "s.json")
    assert "32-d" in str(refused.value) and "16-d" in str(refused.value)
    assert await target.count("emails") == 0
    await source.close()
    await target.close()
    result = run_cli("migrate", "--from", f"edge://{tmp_path / 'a'}",
                     "--to", f"edge://{tmp_path / 'b'}")
    assert result.returncode == 1
    assert result.stderr.startswith("error: collection 'emails': the source holds 32-d vectors")
    assert "Traceback" not in result.stderr


def test_backup_first_backs_up_the_target_before_writing(tmp_path: Path) -> None:
    async def prepare() -> None:
        await edge_store_with(tmp_path / "a", email_points(50))
        await edge_store_with(tmp_path / "b", email_points(7, seed=5))

    asyncio.run(prepare())
    result = CliRunner().invoke(runner_app(), [
        "migrate", "--from", f"edge://{tmp_path / 'a'}", "--to", f"edge://{tmp_path / 'b'}",
        "--backup-first", "--data-dir", str(tmp_path / "data"), "--json",
    ])
    assert result.exit_code == 0, result.output
    [backup] = [p for p in (tmp_path / "data").rglob("manifest.json")]
    manifest = json.loads(backup.read_text())
    assert manifest["collections"]["emails"]["points"] == 7  # the target as it was before
    assert (backup.parent / "vectors" / "emails.jsonl.gz").is_file()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["migrate", "--from", "ftp://x/y", "--to", "edge:///tmp/x"], "unknown scheme"),
        (["verify", "--from", "jsonl:///nowhere/missing.jsonl", "--to", "edge:///tmp/x"],
         "no store at /nowhere/missing.jsonl"),
        (["migrate", "--from", "edge://{a}", "--to", "edge://{b}", "--collection", "../etc"],
         "is not a valid name"),
        (["migrate", "--from", "edge://{a}", "--to", "edge://{b}", "--batch-size", "0"],
         "batch_size: must be between 1 and 100000"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(tmp_path: Path, args: list[str], expected: str) -> None:
    (tmp_path / "a").mkdir()
    filled = [arg.format(a=tmp_path / "a", b=tmp_path / "b") for arg in args]
    result = run_cli(*filled)
    assert result.returncode == 1, result.stderr
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def with_words(points: list[Point], analyser: TextAnalyser) -> list[Point]:
    """The points, each with the sparse vector of its subject and its own number."""
    for n, point in enumerate(points):
        point.sparse = analyser.document(point.payload["subject"] + f" Quimperlé {n}", "fr")
    return points


async def test_sparse_vectors_migrate_through_every_store_and_verify(tmp_path: Path) -> None:
    analyser = TextAnalyser(["fr", "en"])
    points = with_words(email_points(300, seed=11), analyser)
    source = EdgeVectorStore(tmp_path / "a")
    await source.ensure_collection("emails", DIM, "Cosine", INDEXES, sparse=True)
    await source.upsert("emails", points)
    export = JsonlStore(tmp_path / "export.jsonl")
    await migrate(source, export, batch_size=64, state_path=tmp_path / "s1.json")
    await export.close()
    target = EdgeVectorStore(tmp_path / "b")
    await migrate(JsonlStore(tmp_path / "export.jsonl"), target, batch_size=64,
                  state_path=tmp_path / "s2.json")
    report = await verify(source, target)
    assert report.identical, report.as_dict()
    # qdrant-client's local mode re-normalises dense vectors (see verify): compare the sparse.
    local = ServerVectorStore(location=":memory:")
    await migrate(source, local, batch_size=64, state_path=tmp_path / "s3.json")
    read = [p async for batch in local.scroll("emails") for p in batch]
    assert {p.id: p.sparse for p in read} == {p.id: p.sparse for p in points}
    for store in (local, target):
        assert await store.has_sparse("emails")
        hits = await store.search_sparse("emails", analyser.query("quimperle 17"), limit=1)
        assert [hit.id for hit in hits] == [points[17].id]

    # A sparse vector changed on one side is told apart from its dense vector and payload.
    changed = points[5]
    changed.sparse = analyser.document("tout autre chose", "fr")
    await target.upsert("emails", [changed])
    differs = (await verify(source, target)).collections[0]
    assert differs.vector_differs == [changed.id] and differs.payload_differs == []

    # A dense-only target refuses a source with words, by name, before any point moves.
    dense_only = EdgeVectorStore(tmp_path / "c")
    await dense_only.ensure_collection("emails", DIM, "Cosine", INDEXES)
    with pytest.raises(Conflict, match="the source has a sparse vector and the target has no"):
        await migrate(source, dense_only, state_path=tmp_path / "s4.json")
    assert await dense_only.count("emails") == 0
    for store in (source, local, target, dense_only):
        await store.close()


async def test_edge_to_a_new_edge_collection_copies_the_shard_files(tmp_path: Path) -> None:
    analyser = TextAnalyser(["fr", "en"])
    points = with_words(email_points(500, seed=12), analyser)
    source = EdgeVectorStore(tmp_path / "a")
    await source.ensure_collection("emails", DIM, "Cosine", INDEXES, sparse=True)
    await source.upsert("emails", points[:400])
    await source.optimize("emails")
    await source.upsert("emails", points[400:], wait=False)  # some only in the write-ahead log
    target = EdgeVectorStore(tmp_path / "b")
    (tmp_path / "b" / ".copying" / "emails").mkdir(parents=True)  # an interrupted copy's rest
    report = await migrate(source, target, batch_size=64, state_path=tmp_path / "s.json")
    outcome = report.collections[0]
    assert (outcome.method, outcome.copied, outcome.created) == ("shard files", 500, True)
    check = await verify(source, target)
    assert check.identical, check.as_dict()
    assert await target.list_collections() == ["emails"]
    assert not (tmp_path / "b" / ".copying").exists()
    info = await target.collection_info("emails")
    assert (info.points_count, info.payload_indexes, info.sparse) == (500, INDEXES, True)
    hits = await target.search_sparse("emails", analyser.query("quimperle 417"), limit=1)
    assert [hit.id for hit in hits] == [points[417].id]

    # Both stores go on working: the source was closed for the copy and opened again.
    extra = email_points(3, seed=13)
    await source.upsert("emails", extra)
    await target.upsert("emails", extra[:1])
    assert (await source.count("emails"), await target.count("emails")) == (503, 501)
    with pytest.raises(Conflict, match="already exists"):
        await source.copy_collection_to(target, "emails")

    # Into the collection it now has, the same migration goes page by page, as the engine
    # holds the points.
    again = await migrate(source, target, batch_size=64, state_path=tmp_path / "s2.json")
    assert (again.collections[0].method, again.collections[0].copied) == ("edge pages", 503)
    assert (await verify(source, target)).identical
    for store in (source, target):
        await store.close()
    reopened = EdgeVectorStore(tmp_path / "b")
    assert await reopened.count("emails") == 503
    await reopened.close()
