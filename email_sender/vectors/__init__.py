"""Semantic memory: embedders, vector stores (Qdrant Edge | Qdrant server) and checksums.

``store`` defines the VectorStore interface and its filter format; ``edge`` and ``server`` are its
adapters; ``factory`` picks one from the settings or a store URI; ``embedders`` turns text into
vectors and ``sparse`` into BM25 term weights; ``fusion`` merges the two rankings of a hybrid
search; ``checksums`` fingerprints points for migration and verification.
"""

from email_sender.vectors.checksums import (
    DigestAccumulator,
    collection_digest,
    point_checksum,
)
from email_sender.vectors.embedders import (
    Embedder,
    HashingEmbedder,
    LocalEmbedder,
    OpenAIEmbedder,
    build_embedder,
)
from email_sender.vectors.factory import (
    EMAIL_PAYLOAD_INDEXES,
    build_vector_store,
    ensure_collections,
    open_store_uri,
)
from email_sender.vectors.sparse import TextAnalyser
from email_sender.vectors.store import (
    CollectionInfo,
    Point,
    ScoredPoint,
    SparseVector,
    VectorStore,
    parse_filter,
)

__all__ = [
    "EMAIL_PAYLOAD_INDEXES",
    "CollectionInfo",
    "DigestAccumulator",
    "Embedder",
    "HashingEmbedder",
    "LocalEmbedder",
    "OpenAIEmbedder",
    "Point",
    "ScoredPoint",
    "SparseVector",
    "TextAnalyser",
    "VectorStore",
    "build_embedder",
    "build_vector_store",
    "collection_digest",
    "ensure_collections",
    "open_store_uri",
    "parse_filter",
    "point_checksum",
]
