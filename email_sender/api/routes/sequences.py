"""Outreach sequences: create, read, rename, edit an unsent step, enrol, pause, resume, cancel,
preview the next sends, and their stats."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from email_sender.api.deps import ReadScope, SendScope, ServiceDep, client_ip
from email_sender.api.views import iso
from email_sender.db import audit
from email_sender.errors import ValidationError
from email_sender.outreach import reports
from email_sender.outreach.sequences import MAX_ENROL, STATUSES
from email_sender.outreach.steps import SequenceIn, SequencePatch, StepIn
from email_sender.service import Service

router = APIRouter(prefix="/api/v1/sequences", tags=["sequences"])


class EnrolIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    contact_ids: list[Annotated[str, Field(max_length=64)]] | None = Field(
        None, max_length=MAX_ENROL
    )
    segment_id: str | None = Field(None, max_length=64)

    @model_validator(mode="after")
    def _one_source(self) -> EnrolIn:
        if (self.contact_ids is None) == (self.segment_id is None):
            raise ValueError("give either contact_ids or segment_id")
        return self


def sequence_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "sender": row["sender"],
        "status": row["status"],
        "steps": [
            {
                "position": step["position"], "delay_seconds": step["delay"],
                "subject": step["subject"], "text": step["text"], "html": step["html"],
                "same_thread": bool(step["same_thread"]), "conditions": step["conditions"],
            }
            for step in row.get("steps", [])
        ],
        "enrolments": row.get("enrolments", {}),
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }


def enrolment_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "contact_id": row["contact_id"],
        "email": row.get("email"),
        "status": row["status"],
        "next_step": row["next_step"],
        "next_at": iso(row["next_at"]),
        "reason": row["reason"],
        "thread_message_id": row["thread_message_id"],
    }


@router.post("", status_code=201)
async def create_sequence(
    item: SequenceIn, request: Request, service: ServiceDep, principal: SendScope
) -> dict[str, Any]:
    """A sequence and its steps; every template is checked against the contact's fields."""
    row = await service.sequences.create(item)
    await _audit(service, request, principal.name, "sequence_created", row["id"])
    return sequence_view(row)


@router.get("")
async def list_sequences(service: ServiceDep, _: ReadScope) -> dict[str, Any]:
    return {"items": [sequence_view(row) for row in await service.sequences.all()]}


@router.get("/{sequence_id}")
async def get_sequence(sequence_id: str, service: ServiceDep, _: ReadScope) -> dict[str, Any]:
    return sequence_view(await service.sequences.get(sequence_id))


@router.patch("/{sequence_id}")
async def change_sequence(
    sequence_id: str, patch: SequencePatch, request: Request, service: ServiceDep,
    principal: SendScope,
) -> dict[str, Any]:
    row = await service.sequences.update(sequence_id, patch)
    await _audit(service, request, principal.name, "sequence_changed", sequence_id)
    return sequence_view(row)


@router.put("/{sequence_id}/steps/{position}")
async def edit_step(
    sequence_id: str, position: int, step: StepIn, request: Request, service: ServiceDep,
    principal: SendScope,
) -> dict[str, Any]:
    """Replace a step that has not been sent to anyone yet (409 once it has)."""
    row = await service.sequences.edit_step(sequence_id, position, step)
    await _audit(service, request, principal.name, "sequence_step_edited", sequence_id,
                 position=position)
    return sequence_view(row)


@router.post("/{sequence_id}/enrol")
async def enrol(
    sequence_id: str, item: EnrolIn, request: Request, service: ServiceDep, principal: SendScope
) -> dict[str, Any]:
    """Enrol contacts, or a segment's contacts; a result for each: enrolled, already,
    unknown, unreachable (a status or a suppression forbids writing to it)."""
    if item.segment_id is not None:
        contact_ids = await service.segments.contact_ids(item.segment_id, limit=MAX_ENROL)
    else:
        contact_ids = item.contact_ids or []
    report = await service.sequences.enrol(
        sequence_id, contact_ids, now=service.scheduler.clock()
    )
    await _audit(service, request, principal.name, "sequence_enrolled", sequence_id,
                 enrolled=len(report["enrolled"]))
    _wake(service)
    return {**{key: len(ids) for key, ids in report.items()}, "contacts": report}


@router.post("/{sequence_id}/pause")
async def pause(
    sequence_id: str, request: Request, service: ServiceDep, principal: SendScope
) -> dict[str, Any]:
    return await _set_status(sequence_id, "paused", request, service, principal.name)


@router.post("/{sequence_id}/resume")
async def resume(
    sequence_id: str, request: Request, service: ServiceDep, principal: SendScope
) -> dict[str, Any]:
    return await _set_status(sequence_id, "active", request, service, principal.name)


@router.post("/{sequence_id}/cancel")
async def cancel(
    sequence_id: str, request: Request, service: ServiceDep, principal: SendScope
) -> dict[str, Any]:
    return await _set_status(sequence_id, "cancelled", request, service, principal.name)


@router.get("/{sequence_id}/enrolments")
async def list_enrolments(
    sequence_id: str,
    service: ServiceDep,
    _: ReadScope,
    status: Annotated[str | None, Query(max_length=16)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    if status is not None and status not in STATUSES:
        raise ValidationError("status", f"one of {', '.join(STATUSES)}")
    rows = await service.sequences.enrolments(sequence_id, status=status, limit=limit)
    return {"items": [enrolment_view(row) for row in rows]}


@router.get("/{sequence_id}/preview")
async def preview(
    sequence_id: str,
    service: ServiceDep,
    _: ReadScope,
    count: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> dict[str, Any]:
    """The next ``count`` sends with their planned times; nothing is sent."""
    planned = await reports.preview(service.scheduler, service.sequences, sequence_id,
                                    count=count)
    return {"items": [{**send, "at": iso(send["at"])} for send in planned]}


@router.get("/{sequence_id}/stats")
async def stats(sequence_id: str, service: ServiceDep, _: ReadScope) -> dict[str, Any]:
    return await reports.stats(service.sequences, sequence_id)


async def _set_status(
    sequence_id: str, status: str, request: Request, service: Service, actor: str
) -> dict[str, Any]:
    row = await service.sequences.set_status(sequence_id, status)
    await _audit(service, request, actor, f"sequence_{status}", sequence_id)
    _wake(service)
    return sequence_view(row)


def _wake(service: Service) -> None:
    manager = service.get("outreach_scheduler")
    if manager is not None:
        manager.wake()


async def _audit(
    service: Service, request: Request, actor: str, action: str, target: str, **details: Any
) -> None:
    await audit.record(
        service.db, actor=actor, action=action, target=target, details=details or None,
        client_ip=client_ip(request),
    )
