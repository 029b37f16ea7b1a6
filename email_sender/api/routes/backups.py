"""Backups for admins: create (in process, with this node's open vector store), list, verify."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request

from email_sender.api.deps import AdminScope, ServiceDep, client_ip
from email_sender.db import audit
from email_sender.errors import NotFound
from email_sender.ops import backup as backups

router = APIRouter(prefix="/api/v1/backups", tags=["backups"])

_NAME = re.compile(r"^[0-9A-Za-z_.-]{1,128}$")


@router.get("")
async def list_backups(service: ServiceDep, _: AdminScope) -> dict[str, Any]:
    """Backups in backup.dir, oldest first."""
    return {"items": backups.list_backups(service.settings.backup_dir), "next_cursor": None}


@router.post("", status_code=201)
async def create(service: ServiceDep, principal: AdminScope, request: Request) -> dict[str, Any]:
    """Write a backup of the SQL data, every collection and the config; audited."""
    qdrant = service.get("qdrant_manager")
    store = qdrant.store if qdrant is not None else None
    folder = await backups.create_backup(service.settings, service.db, store)
    manifest = backups.read_manifest(folder)
    await audit.record(service.db, actor=principal.name, action="backup_created",
                       target=folder.name, client_ip=client_ip(request),
                       details={"tables": manifest["tables"]})
    return {"name": folder.name, "path": str(folder), "tables": manifest["tables"],
            "collections": {name: value["points"]
                            for name, value in manifest["collections"].items()}}


@router.get("/{name}/verify")
async def verify(name: str, service: ServiceDep, principal: AdminScope,
                 request: Request) -> dict[str, Any]:
    """Check every file's SHA-256, every count and digest of one backup; audited."""
    folder = service.settings.backup_dir / name
    if not _NAME.match(name) or not folder.is_dir():
        raise NotFound(f"no backup named {name}", name=name)
    checks = await backups.verify_backup(folder)
    result = backups.report(checks)
    await audit.record(service.db, actor=principal.name, action="backup_verified",
                       target=name, client_ip=client_ip(request), details={"ok": result["ok"]})
    return {"name": name, **result}
