"""The suppression list."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from email_sender.api.deps import AdminScope, ReadScope, ServiceDep, client_ip
from email_sender.api.views import iso
from email_sender.db import audit
from email_sender.mail.message import address_of

router = APIRouter(prefix="/api/v1/suppressions", tags=["suppressions"])


class SuppressionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    address: str = Field(max_length=320)
    reason: str = Field("manual", pattern=r"^[a-z_]{1,64}$")
    detail: str | None = Field(None, max_length=2000)

    @field_validator("address")
    @classmethod
    def _valid(cls, value: str) -> str:
        import email_validator

        try:
            return email_validator.validate_email(value, check_deliverability=False).normalized
        except email_validator.EmailNotValidError as exc:
            raise ValueError(str(exc)) from exc


def _view(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "created_at": iso(row["created_at"])}


@router.get("")
async def list_suppressions(
    service: ServiceDep,
    _: ReadScope,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=320)] = None,
) -> dict[str, Any]:
    """Suppressed addresses, in address order."""
    rows, next_cursor = await service.suppressions.page(limit=limit, cursor=cursor)
    return {"items": [_view(row) for row in rows], "next_cursor": next_cursor}


@router.post("", status_code=201)
async def add(
    item: SuppressionIn, service: ServiceDep, principal: AdminScope, request: Request
) -> JSONResponse:
    """Suppress an address: no mail goes to it until it is removed."""
    created = await service.suppressions.add(item.address, reason=item.reason, detail=item.detail)
    await audit.record(
        service.db,
        actor=principal.name,
        action="suppression_added",
        target=item.address,
        client_ip=client_ip(request),
    )
    return JSONResponse(
        {"address": address_of(item.address).lower(), "created": created},
        status_code=201 if created else 200,
    )


@router.delete("/{address}")
async def remove(
    address: str, service: ServiceDep, principal: AdminScope, request: Request
) -> dict[str, Any]:
    """Remove an address from the suppression list."""
    await service.suppressions.remove(address)
    await audit.record(
        service.db,
        actor=principal.name,
        action="suppression_removed",
        target=address,
        client_ip=client_ip(request),
    )
    return {"address": address.lower(), "removed": True}
