"""The framework's ceiling: a bare FastAPI app under uvicorn, one process, as ours runs.

``GET /health`` answers a constant; ``POST /api/v1/emails`` validates the same JSON shape with
pydantic and counts it in memory (no database); ``GET /count`` says how many it took.
"""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import BaseModel, Field

app = FastAPI()
taken = 0


class Email(BaseModel):
    from_: str = Field(alias="from")
    to: list[str]
    subject: str
    text: str


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/api/v1/emails", status_code=202)
async def accept(email: Email) -> dict[str, str]:
    global taken
    taken += 1
    return {"status": "queued"}


@app.get("/count")
async def count() -> dict[str, int]:
    return {"taken": taken}
