"""The sparse vector, on every VectorStore: Qdrant Edge, qdrant-client local mode, a real server.

The texts are analysed by the service's own TextAnalyser, so these also pin what BM25 with the
French and English analysers finds: an inflected form, a word typed without its accents.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from email_sender.errors import Conflict, ValidationError
from email_sender.ops.jsonl import JsonlStore
from email_sender.vectors.checksums import point_checksum
from email_sender.vectors.edge import EdgeVectorStore
from email_sender.vectors.fusion import fuse
from email_sender.vectors.sparse import TextAnalyser, union_of_terms
from email_sender.vectors.store import Point, SparseVector, VectorStore
from tests.integration.vectors.test_vec_store_contract import BACKENDS, DIM, _open, unit

TEXTS = {
    "quimperle": ("fr", "La date du 12 mars à Quimperlé (L'Échonova) est confirmée."),
    "rennes": ("fr", "La date du 14 mars à Rennes (Le Jardin Moderne) est confirmée."),
    "brest": ("fr", "Nous avons annulé les deux concerts prévus à Brest, désolés."),
    "leeds": ("en", "Sorry, we had to cancel the show in Leeds next week."),
}
ANALYSER = TextAnalyser(["fr", "en"])


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[VectorStore]:
    opened = _open(request.param, tmp_path)
    yield opened
    await opened.close()


@pytest.fixture
async def hybrid(store: VectorStore) -> AsyncIterator[str]:
    name = f"hybrid_{uuid.uuid4().hex[:12]}"
    await store.ensure_collection(name, DIM, "Cosine", {"lang": "keyword"}, sparse=True)
    ids = {key: str(uuid.uuid5(uuid.NAMESPACE_URL, key)) for key in TEXTS}
    points = [
        Point(ids[key], unit(1.0, float(i)), {"key": key, "lang": lang},
              ANALYSER.document(text, lang))
        for i, (key, (lang, text)) in enumerate(TEXTS.items())
    ]
    await store.upsert(name, points)
    yield name
    await store.delete_collection(name)


async def words(store: VectorStore, name: str, query: str, **kwargs: object) -> list[str]:
    hits = await store.search_sparse(name, ANALYSER.query(query), **kwargs)  # type: ignore[arg-type]
    return [hit.payload["key"] for hit in hits]


async def test_a_rare_word_finds_its_email_typed_without_accents(
    store: VectorStore, hybrid: str
) -> None:
    assert (await store.collection_info(hybrid)).sparse is True
    assert await store.has_sparse(hybrid) is True
    assert await words(store, hybrid, "Quimperle") == ["quimperle"]
    assert await words(store, hybrid, "jardin moderne") == ["rennes"]


async def test_inflected_forms_match_in_each_language(store: VectorStore, hybrid: str) -> None:
    # "annulation concert" shares the stems of "annulé … concerts"; "cancelled shows" those of
    # "cancel the show": each query is analysed in both languages.
    assert (await words(store, hybrid, "annulation concert Brest"))[0] == "brest"
    assert (await words(store, hybrid, "cancelled shows"))[0] == "leeds"


async def test_an_email_sharing_no_word_is_not_returned(store: VectorStore, hybrid: str) -> None:
    assert await words(store, hybrid, "zzzunknownword") == []


async def test_filters_and_limit_apply_to_sparse_search(store: VectorStore, hybrid: str) -> None:
    assert await words(store, hybrid, "confirmée", filter={"lang": "en"}) == []
    assert len(await words(store, hybrid, "date mars confirmée", limit=1)) == 1


async def test_sparse_vectors_round_trip_under_their_checksum(
    store: VectorStore, hybrid: str
) -> None:
    read = [point async for batch in store.scroll(hybrid) for point in batch]
    assert len(read) == len(TEXTS)
    for point in read:
        lang, text = TEXTS[point.payload["key"]]
        assert point.sparse == ANALYSER.document(text, lang)
        assert point.vector is not None
        # Stored and read back bit for bit: the checksum of the read point is the written one's.
        written = point_checksum(point.id, point.vector, point.payload, point.sparse)
        assert written == point_checksum(point.id, point.vector, point.payload,
                                         ANALYSER.document(text, lang))
    [one] = await store.retrieve(hybrid, [read[0].id], with_vectors=True)
    assert one.sparse == read[0].sparse


async def test_a_dense_only_collection_refuses_sparse_and_still_answers_dense(
    store: VectorStore,
) -> None:
    name = f"dense_{uuid.uuid4().hex[:12]}"
    await store.ensure_collection(name, DIM, "Cosine")
    try:
        assert await store.has_sparse(name) is False
        # Asking again with sparse=True does not fail: the collection is left as it is.
        await store.ensure_collection(name, DIM, "Cosine", sparse=True)
        assert (await store.collection_info(name)).sparse is False
        with pytest.raises(Conflict, match="vectors upgrade"):
            await store.search_sparse(name, ANALYSER.query("concert"))
        sparse = ANALYSER.document("un concert", "fr")
        with pytest.raises(ValidationError, match="no sparse vector"):
            await store.upsert(name, [Point(str(uuid.uuid4()), unit(1.0), {}, sparse)])
        assert await store.count(name) == 0
        await store.upsert(name, [Point(str(uuid.uuid4()), unit(1.0), {"key": "dense"})])
        hits = await store.search(name, unit(1.0))
        assert [hit.payload["key"] for hit in hits] == ["dense"]
    finally:
        await store.delete_collection(name)


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (SparseVector((1, 2), (1.0,)), "sparse"),
        (SparseVector((1, 1), (1.0, 2.0)), "sparse.indices"),
        (SparseVector((-1,), (1.0,)), "sparse.indices"),
        (SparseVector((2**32,), (1.0,)), "sparse.indices"),
        (SparseVector((1,), (float("nan"),)), "sparse.values"),
        (SparseVector((1,), (1e39,)), "sparse.values"),
    ],
)
async def test_malformed_sparse_vectors_are_refused_and_nothing_is_stored(
    store: VectorStore, hybrid: str, bad: SparseVector, field: str
) -> None:
    good = Point(str(uuid.uuid4()), unit(1.0), {}, ANALYSER.document("un concert", "fr"))
    with pytest.raises(ValidationError) as refused:
        await store.upsert(hybrid, [good, Point(str(uuid.uuid4()), unit(1.0), {}, bad)])
    assert refused.value.field == field
    assert await store.count(hybrid) == len(TEXTS)
    with pytest.raises(ValidationError):
        await store.search_sparse(hybrid, bad)


async def test_edge_keeps_the_sparse_vector_across_a_reopen(tmp_path: Path) -> None:
    store = EdgeVectorStore(tmp_path / "q")
    await store.ensure_collection("emails", DIM, "Cosine", sparse=True)
    sparse = ANALYSER.document(TEXTS["quimperle"][1], "fr")
    await store.upsert("emails", [Point(str(uuid.uuid4()), unit(1.0), {}, sparse)])
    await store.close()
    reopened = EdgeVectorStore(tmp_path / "q")
    try:
        assert await reopened.has_sparse("emails")
        assert len(await reopened.search_sparse("emails", ANALYSER.query("quimperlé"))) == 1
    finally:
        await reopened.close()


async def test_a_jsonl_export_keeps_sparse_vectors_and_checks_them(tmp_path: Path) -> None:
    path = tmp_path / "export.jsonl"
    export = JsonlStore(path)
    await export.ensure_collection("emails", DIM, "Cosine", sparse=True)
    sparse = ANALYSER.document(TEXTS["leeds"][1], "en")
    point = Point(str(uuid.uuid4()), np.asarray(unit(1.0)), {"k": 1}, sparse)
    await export.upsert("emails", [point])
    await export.close()
    read = JsonlStore(path)
    assert await read.has_sparse("emails")
    [[back]] = [batch async for batch in read.scroll("emails")]
    assert back.sparse == sparse
    await read.close()
    # A value changed in the file breaks the point's checksum.
    line = path.read_text().splitlines()
    tampered = line[1].replace('"values":[', '"values":[9.5,', 1).replace(
        '"indices":[', f'"indices":[{2**32 - 1},', 1)
    path.write_text("\n".join([line[0], tampered]) + "\n")
    with pytest.raises(Exception, match="checksum"):
        [batch async for batch in JsonlStore(path).scroll("emails")]


async def test_hybrid_fusion_over_each_store_puts_words_first_and_meaning_otherwise(
    store: VectorStore, hybrid: str
) -> None:
    # The dense query points at "rennes" (unit(1.0, 1.0)); the words name Quimperlé.
    meaning = unit(1.0, 1.0)
    terms = ANALYSER.query_terms("Quimperlé")
    dense = await store.search(hybrid, meaning, limit=4)
    words = await store.search_sparse(hybrid, union_of_terms(terms), limit=4, with_terms=True)
    assert dense[0].payload["key"] == "rennes"
    assert all(hit.sparse is not None for hit in words)
    assert [hit.payload["key"] for hit in fuse(dense, words, terms, 4)][:2] == [
        "quimperle", "rennes"
    ]
    # A query sharing one word of three with an email: meaning keeps the order.
    terms = ANALYSER.query_terms("semaine prochaine Leeds")
    words = await store.search_sparse(hybrid, union_of_terms(terms), limit=4, with_terms=True)
    assert [hit.payload["key"] for hit in words] == ["leeds"]
    fused = fuse(dense, words, terms, 4)
    assert [hit.payload["key"] for hit in fused] == [hit.payload["key"] for hit in dense]
    # Without with_terms, hits carry no sparse vector.
    bare = await store.search_sparse(hybrid, union_of_terms(terms), limit=4)
    assert all(hit.sparse is None for hit in bare)
