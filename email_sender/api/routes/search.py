"""Semantic search over emails, similar emails, and tasks."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from email_sender.api.deps import ReadScope, SendScope
from email_sender.api.views import epoch
from email_sender.vectors.search import SearchService

router = APIRouter(prefix="/api/v1", tags=["search"])

OneOrMany = str | list[str]
TAG_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"


def get_search(request: Request) -> SearchService:
    search: SearchService | None = getattr(request.app.state.service, "search", None)
    if search is None:
        raise HTTPException(503, "semantic search is not enabled on this node")
    return search


class TimeRange(BaseModel):
    """Bounds on a time, as epoch seconds or ISO-8601."""

    model_config = ConfigDict(extra="forbid")

    gt: float | datetime | None = None
    gte: float | datetime | None = None
    lt: float | datetime | None = None
    lte: float | datetime | None = None

    @model_validator(mode="after")
    def _some_bound(self) -> TimeRange:
        if all(value is None for value in (self.gt, self.gte, self.lt, self.lte)):
            raise ValueError("give at least one of gt, gte, lt, lte")
        return self

    def flat(self) -> dict[str, float]:
        bounds = {"gt": self.gt, "gte": self.gte, "lt": self.lt, "lte": self.lte}
        return {
            name: value if isinstance(value, float) else float(epoch(value) or 0.0)
            for name, value in bounds.items()
            if value is not None
        }


class EmailFilter(BaseModel):
    """Payload conditions, all of which must hold; a list matches any of its values."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: OneOrMany | None = Field(None, alias="from")
    to: OneOrMany | None = None
    tags: OneOrMany | None = None
    status: OneOrMany | None = None
    direction: OneOrMany | None = None
    campaign: OneOrMany | None = None
    created_at: TimeRange | None = None

    def flat(self) -> dict[str, Any]:
        flat: dict[str, Any] = {}
        for name, value in self.model_dump(by_alias=True, exclude_none=True).items():
            if name in ("from", "to"):  # payload addresses are lower-cased
                value = value.lower() if isinstance(value, str) else [v.lower() for v in value]
            flat[name] = value
        if self.created_at is not None:
            flat["created_at"] = self.created_at.flat()
        return flat


class SearchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str | None = Field(None, min_length=1, max_length=4000)
    vector: list[float] | None = Field(None, min_length=1, max_length=65536)
    limit: int = Field(10, ge=1, le=100)
    filter: EmailFilter | None = None
    mode: Literal["hybrid", "dense", "sparse"] = "hybrid"

    @model_validator(mode="after")
    def _query_or_vector(self) -> SearchIn:
        if (self.query is None) == (self.vector is None):
            raise ValueError("query, vector: give exactly one of query or vector")
        if self.mode == "sparse" and self.query is None:
            raise ValueError("mode: sparse search matches words, give a query text")
        return self


class TaskIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=10_000)
    email_id: str | None = Field(None, max_length=36)
    tags: list[Annotated[str, Field(pattern=TAG_PATTERN)]] = Field(
        default_factory=list, max_length=20
    )


class TaskFilter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email_id: OneOrMany | None = None
    tags: OneOrMany | None = None
    created_at: TimeRange | None = None

    def flat(self) -> dict[str, Any]:
        flat: dict[str, Any] = self.model_dump(exclude_none=True, exclude={"created_at"})
        if self.created_at is not None:
            flat["created_at"] = self.created_at.flat()
        return flat


class TaskSearchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str | None = Field(None, min_length=1, max_length=4000)
    vector: list[float] | None = Field(None, min_length=1, max_length=65536)
    limit: int = Field(10, ge=1, le=100)
    filter: TaskFilter | None = None

    @model_validator(mode="after")
    def _query_or_vector(self) -> TaskSearchIn:
        if (self.query is None) == (self.vector is None):
            raise ValueError("query, vector: give exactly one of query or vector")
        return self


@router.post("/search")
async def search(body: SearchIn, request: Request, _: ReadScope) -> dict[str, Any]:
    """Emails nearest to a text query or a vector, with filters on their payload."""
    results = await get_search(request).search(
        query=body.query,
        vector=body.vector,
        limit=body.limit,
        filter=body.filter.flat() if body.filter else None,
        mode=body.mode,
    )
    return {"results": results}


@router.get("/emails/{email_id}/similar")
async def similar(
    email_id: str,
    request: Request,
    _: ReadScope,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> dict[str, Any]:
    """The emails nearest to this one."""
    return {"results": await get_search(request).similar(email_id, limit)}


@router.post("/tasks", status_code=201)
async def create_task(body: TaskIn, request: Request, _: SendScope) -> dict[str, Any]:
    """Store a task or note (optionally tied to an email) and index it."""
    return await get_search(request).tasks.create(body.text, email_id=body.email_id, tags=body.tags)


@router.post("/tasks/search")
async def search_tasks(body: TaskSearchIn, request: Request, _: ReadScope) -> dict[str, Any]:
    """Tasks nearest to a text query or a vector."""
    service = get_search(request)
    vector = await service.query_vector(body.query, body.vector)
    filter = body.filter.flat() if body.filter else None
    return {"results": await service.tasks.search(vector, limit=body.limit, filter=filter)}
