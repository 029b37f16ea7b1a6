"""Choosing a vector store from the settings or from a store URI."""

from __future__ import annotations

from pathlib import Path

import pytest

from email_sender.errors import ValidationError
from email_sender.settings import CollectionSettings, Settings
from email_sender.vectors.edge import EdgeVectorStore
from email_sender.vectors.factory import (
    EMAIL_PAYLOAD_INDEXES,
    build_vector_store,
    ensure_collections,
    open_store_uri,
)
from email_sender.vectors.server import ServerVectorStore


async def test_settings_without_url_give_edge_under_the_data_dir(tmp_path: Path) -> None:
    store = build_vector_store(Settings(data_dir=tmp_path))

    assert isinstance(store, EdgeVectorStore)
    assert store.path == tmp_path / "qdrant"
    assert (tmp_path / "qdrant" / ".lock").is_file()
    await store.close()


async def test_settings_with_url_give_a_server_store() -> None:
    store = build_vector_store(Settings(qdrant={"url": "http://127.0.0.1:6333"}))

    assert isinstance(store, ServerVectorStore)
    assert (store.backend, store.where) == ("qdrant", "http://127.0.0.1:6333")
    await store.close()


async def test_edge_and_local_uris_open_real_stores(tmp_path: Path) -> None:
    edge = open_store_uri(f"edge://{tmp_path}/edge")
    local = open_store_uri(f"local://{tmp_path}/local")
    memory = open_store_uri("memory://")
    try:
        for store in (edge, local, memory):
            await store.ensure_collection("emails", 4)
            assert await store.list_collections() == ["emails"]
    finally:
        for store in (edge, local, memory):
            await store.close()

    assert isinstance(edge, EdgeVectorStore) and edge.path == tmp_path / "edge"
    assert (local.backend, memory.backend) == ("qdrant-local", "qdrant-local")


@pytest.mark.parametrize(
    ("uri", "url"),
    [
        ("qdrant://db.internal:6333", "http://db.internal:6333"),
        ("qdrants://db.internal:6333?grpc=1&timeout=5", "https://db.internal:6333"),
        ("https://db.internal", "https://db.internal"),
    ],
)
async def test_server_uris(uri: str, url: str) -> None:
    store = open_store_uri(uri)

    assert isinstance(store, ServerVectorStore)
    assert store.where == url
    await store.close()


@pytest.mark.parametrize("uri", ["ftp://host/x", "nothing", "edge://", "qdrant://?api_key=k"])
def test_bad_uris_are_refused_without_leaking_the_key(uri: str) -> None:
    with pytest.raises(ValidationError) as caught:
        open_store_uri(uri + ("&" if "?" in uri else "?") + "api_key=secret")

    assert caught.value.field == "uri"
    assert "secret" not in str(caught.value)


async def test_ensure_collections_creates_both_with_the_email_indexes(tmp_path: Path) -> None:
    store = build_vector_store(Settings(data_dir=tmp_path))
    names = CollectionSettings(emails="mail", tasks="jobs")
    try:
        await ensure_collections(store, names, 16)
        await ensure_collections(store, names, 16)  # a second start changes nothing
        info = await store.collection_info("mail")
        listed = await store.list_collections()
    finally:
        await store.close()

    assert listed == ["jobs", "mail"]
    assert (info.dimension, info.payload_indexes) == (16, EMAIL_PAYLOAD_INDEXES)
