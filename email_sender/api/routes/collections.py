"""Vector collections: list, describe, and raw vector search as Qdrant's own endpoint."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from email_sender.api.deps import ReadScope
from email_sender.vectors.managers import QdrantManager
from email_sender.vectors.search import translate_qdrant_filter
from email_sender.vectors.store import Point, VectorStore

router = APIRouter(prefix="/api/v1/collections", tags=["collections"])

MAX_PAGE = 1000


async def _store(request: Request) -> VectorStore:
    qdrant: QdrantManager | None = request.app.state.service.get("qdrant_manager")
    if qdrant is None:
        raise HTTPException(503, "this node runs no vector store")
    return await qdrant.ready_store()


class PointsSearchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    vector: list[float] = Field(min_length=1, max_length=65536)
    limit: int = Field(10, ge=1, le=1000)
    filter: dict[str, Any] | None = None
    with_payload: bool = True


@router.get("")
async def list_collections(request: Request, _: ReadScope) -> dict[str, Any]:
    """Every collection with its points, dimension, distance, indexes and backend."""
    store = await _store(request)
    names = await store.list_collections()
    items = [(await store.collection_info(name)).as_dict() for name in names]
    return {"items": items, "next_cursor": None}


@router.get("/{name}")
async def get_collection(name: str, request: Request, _: ReadScope) -> dict[str, Any]:
    """One collection: points, dimension, distance, payload indexes, backend."""
    return (await (await _store(request)).collection_info(name)).as_dict()


@router.get("/{name}/points")
async def browse_points(
    name: str,
    request: Request,
    _: ReadScope,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 10,
    offset: Annotated[str | None, Query(max_length=64)] = None,
    with_vector: bool = False,
) -> dict[str, Any]:
    """Browse points in id order: `offset` is the `next_offset` of the previous page."""
    store = await _store(request)
    points, following = await store.scroll_page(name, limit, offset, with_vector)
    items = [_browsed(point, with_vector) for point in points]
    return {"items": items, "next_offset": following}


def _browsed(point: Point, with_vector: bool) -> dict[str, Any]:
    item: dict[str, Any] = {"id": point.id, "payload": point.payload}
    if with_vector:
        item["vector"] = None if point.vector is None else [float(v) for v in point.vector]
        if point.sparse is not None:
            item["sparse"] = {"indices": point.sparse.indices, "values": point.sparse.values}
    return item


@router.post("/{name}/points/search")
async def search_points(
    name: str, body: PointsSearchIn, request: Request, _: ReadScope
) -> dict[str, Any]:
    """Raw vector search with a Qdrant-style filter, answered as Qdrant does."""
    started = time.perf_counter()
    store = await _store(request)
    hits = await store.search(
        name, body.vector, limit=body.limit, filter=translate_qdrant_filter(body.filter)
    )
    result = [
        {"id": hit.id, "score": hit.score, "payload": hit.payload if body.with_payload else None}
        for hit in hits
    ]
    return {"result": result, "status": "ok", "time": time.perf_counter() - started}
