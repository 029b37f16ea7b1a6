"""Build a VectorStore from the settings, or from a store URI given on the command line.

Store URIs (used by ``vectors migrate|verify|compare``)::

    edge:///abs/dir  edge://rel/dir       Qdrant Edge shards in that directory
    local:///abs/dir                      qdrant-client local mode persisted in that directory
    memory://                             qdrant-client local mode in memory
    qdrant://host:6333?api_key=K&grpc=1   a Qdrant server over http (grpc=1 prefers gRPC)
    qdrants://host:6333  https://host     the same over TLS; http://host:6333 also works

Query parameters for servers: ``api_key``, ``grpc`` (1/true), ``timeout`` (seconds).
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from email_sender.errors import ValidationError
from email_sender.settings import CollectionSettings, Settings
from email_sender.vectors.edge import EdgeVectorStore
from email_sender.vectors.server import ServerVectorStore
from email_sender.vectors.store import VectorStore

logger = logging.getLogger(__name__)

# The payload fields the API filters on (DESIGN "Vectors"); created_at is epoch seconds.
EMAIL_PAYLOAD_INDEXES: dict[str, str] = {
    "email_id": "keyword",
    "direction": "keyword",
    "from": "keyword",
    "to": "keyword",
    "tags": "keyword",
    "campaign": "keyword",
    "status": "keyword",
    "created_at": "float",
    "embedding_model": "keyword",
    "lang": "keyword",
}
TASK_PAYLOAD_INDEXES: dict[str, str] = {"created_at": "float"}

_SERVER_SCHEMES = {"qdrant": "http", "http": "http", "qdrants": "https", "https": "https"}
_TRUE = {"1", "true", "yes", "on"}


def build_vector_store(settings: Settings) -> VectorStore:
    """A server store when ``qdrant.url`` is set, else Qdrant Edge under the data dir."""
    qdrant = settings.qdrant
    if qdrant.url:
        return ServerVectorStore(
            qdrant.url,
            api_key=qdrant.api_key.get_secret_value() if qdrant.api_key else None,
            prefer_grpc=qdrant.prefer_grpc,
            timeout=qdrant.timeout,
            max_connections=settings.connection_pool.max_connections,
            idle_timeout=settings.connection_pool.idle_timeout,
        )
    return EdgeVectorStore(settings.qdrant_path)


async def ensure_collections(
    store: VectorStore, collections: CollectionSettings, dimension: int
) -> None:
    """Create the email and task collections with their payload indexes, or check them.

    Emails are searched by their words too: their collection has the sparse vector."""
    await store.ensure_collection(
        collections.emails, dimension, "Cosine", EMAIL_PAYLOAD_INDEXES, sparse=True
    )
    await store.ensure_collection(collections.tasks, dimension, "Cosine", TASK_PAYLOAD_INDEXES)


def open_store_uri(uri: str) -> VectorStore:
    """Open the store a URI names (see the module docstring), or raise ValidationError."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme in ("edge", "local"):
        location = parts.netloc + parts.path
        if not location:
            raise ValidationError("uri", f"{_masked(uri)!r} names no directory")
        if scheme == "edge":
            return EdgeVectorStore(Path(location))
        return ServerVectorStore(path=Path(location))
    if scheme == "memory":
        return ServerVectorStore(location=":memory:")
    if scheme in _SERVER_SCHEMES:
        return _server_from_uri(uri)
    raise ValidationError(
        "uri",
        f"{_masked(uri)!r} has an unknown scheme; use edge:///dir, local:///dir, memory://, "
        "qdrant://host:6333 or qdrants://host:6333",
    )


def _server_from_uri(uri: str) -> ServerVectorStore:
    parts = urlsplit(uri)
    if not parts.hostname:
        raise ValidationError("uri", f"{_masked(uri)!r} names no host")
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    scheme = _SERVER_SCHEMES[parts.scheme.lower()]
    url = f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}"
    try:
        timeout = float(query.get("timeout", "10"))
    except ValueError as exc:
        raise ValidationError("uri.timeout", "must be a number of seconds") from exc
    return ServerVectorStore(
        url,
        api_key=query.get("api_key") or None,
        prefer_grpc=query.get("grpc", "").lower() in _TRUE,
        timeout=timeout,
    )


def _masked(uri: str) -> str:
    """The URI without its query string, which may carry an API key."""
    return uri.split("?", 1)[0]
