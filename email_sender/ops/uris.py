"""Store URIs for migrate, verify, export and import.

Every URI of :func:`email_sender.vectors.factory.open_store_uri` works here, plus::

    jsonl:///abs/path/file.jsonl     a portable export (gzip-compressed when the name ends .gz)
    jsonl://rel/path/file.jsonl.gz

Any of them can be a source or a target. The export format and its store are in
:mod:`email_sender.ops.jsonl`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from email_sender.errors import NotFound, ValidationError
from email_sender.ops.jsonl import JsonlStore
from email_sender.vectors.factory import open_store_uri

_FILE_SCHEMES = ("edge", "local", "jsonl")


def open_store(uri: str, *, must_exist: bool = False) -> Any:
    """Open the store a URI names; with ``must_exist`` a missing file or folder is NotFound.

    A source must exist: opening ``edge:///typo`` would otherwise create an empty store there.
    """
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    location = store_location(uri)
    if must_exist and location is not None and not location.exists():
        raise NotFound(f"no store at {location} (from {masked_uri(uri)})", uri=masked_uri(uri))
    if scheme == "jsonl":
        assert location is not None
        return JsonlStore(location)
    return open_store_uri(uri)


def store_location(uri: str) -> Path | None:
    """The file or folder a file-backed URI names; None for servers and memory://."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme not in _FILE_SCHEMES:
        return None
    location = parts.netloc + parts.path
    if not location:
        raise ValidationError("uri", f"{masked_uri(uri)!r} names no path")
    if scheme == "jsonl" and not location.endswith((".jsonl", ".jsonl.gz")):
        raise ValidationError(
            "uri", f"{masked_uri(uri)!r}: a jsonl file name must end .jsonl or .jsonl.gz"
        )
    return Path(location)


def default_state_path(target_uri: str) -> Path:
    """Where a migration into ``target_uri`` records its progress: beside the target.

    ``edge:///srv/qdrant`` → ``/srv/qdrant.migrate-state.json``; a server target has nothing
    beside it, so its state goes in the working directory, named after host and port.
    """
    location = store_location(target_uri)
    if location is not None:
        resolved = location.resolve()
        return resolved.parent / f"{resolved.name}.migrate-state.json"
    parts = urlsplit(target_uri)
    where = f"{parts.hostname or 'memory'}-{parts.port or 0}"
    return Path.cwd() / f"migrate-state-{where}.json"


def same_store(first: str, second: str) -> bool:
    """True when two URIs name the same file or folder (or the same server)."""
    first_location, second_location = store_location(first), store_location(second)
    if first_location is not None and second_location is not None:
        return first_location.resolve() == second_location.resolve()
    return masked_uri(first).rstrip("/") == masked_uri(second).rstrip("/")


def masked_uri(uri: str) -> str:
    """The URI without its query string, which may carry an API key."""
    return uri.split("?", 1)[0]
