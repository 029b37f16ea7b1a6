"""After a message is stored: classify a person's reply by meaning, index every message.

Each stored message waits with ``vector_state = pending`` until it has been embedded once (the
reply's own words, or the subject when there are none), classified when a person wrote it, and
put into the emails collection with ``direction: inbound``, its kind and its intent in the
payload, so semantic search covers both sides of a conversation. A model or a store that is
away leaves it pending for the next round; nothing is lost.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from email_sender import metrics
from email_sender.errors import EmailSenderError, EmbedderUnavailable, VectorStoreUnavailable
from email_sender.events import EventBus
from email_sender.inbound.store import HUMAN_KINDS, InboundStore
from email_sender.vectors.payloads import MAX_EMBED_CHARS, TIME_DECIMALS, checked_point
from email_sender.vectors.sparse import MAX_SPARSE_CHARS

if TYPE_CHECKING:
    from email_sender.classify import Classification, ReplyClassifier
    from email_sender.vectors.managers import EmbedderManager, QdrantManager

logger = logging.getLogger(__name__)

DIRECTION_INBOUND = "inbound"
# The columns a classification sets.
CLASSIFICATION = ("intent", "confidence", "layer", "needs_review", "scores")
# Rows read per round of the pending loop.
PENDING_BATCH = 32


def inbound_document(row: dict[str, Any]) -> str:
    """What is embedded: the sender's own words, else the subject (a bounce, say)."""
    words = (row.get("own_words") or "").strip()
    return (words or row.get("subject") or "(empty)")[:MAX_EMBED_CHARS]


def inbound_words(row: dict[str, Any]) -> str:
    """What its sparse vector is made of: the subject and the sender's own words."""
    text = f"{row.get('subject') or ''}\n\n{row.get('own_words') or ''}".strip()
    return text[:MAX_SPARSE_CHARS]


def inbound_payload(
    row: dict[str, Any], embedding_model: str, language: str | None = None
) -> dict[str, Any]:
    """The payload of an inbound point, without its checksum.

    ``email_id`` is the email answered, so a filter on it finds both sides of a conversation.
    """
    return {
        "email_id": row["email_id"],
        "inbound_id": row["id"],
        "direction": DIRECTION_INBOUND,
        "from": (row["from_addr"] or "").lower(),
        "to": list(row["to_addrs"] or []),
        "subject": row["subject"] or "",
        "tags": [],
        "campaign": None,
        "status": row["kind"],
        "kind": row["kind"],
        "intent": row["intent"],
        "created_at": round(float(row["received_at"]), TIME_DECIMALS),
        "embedding_model": embedding_model,
        **({} if language is None else {"lang": language}),
    }


class ReplyAnalyst:
    def __init__(
        self,
        store: InboundStore,
        bus: EventBus,
        *,
        classifier: ReplyClassifier,
        embedder: EmbedderManager,
        qdrant: QdrantManager,
        collection: str,
    ) -> None:
        self.store = store
        self.bus = bus
        self.classifier = classifier
        self.embedder = embedder
        self.qdrant = qdrant
        self.collection = collection
        self.counters = {"classified": 0, "indexed": 0, "failed": 0}

    async def process(self, row: dict[str, Any]) -> bool:
        """Classify (when a person wrote it) and index one stored message; False if deferred.

        The classification is saved as soon as it is made: a store that is away delays the
        indexing, not the answer to "what did they say".
        """
        try:
            vector = await self.embedder.embed_one(inbound_document(row))
            # Classified once: a reindex or a retry does not overwrite a decision or a label.
            if row["kind"] in HUMAN_KINDS and row["intent"] is None:
                result = await self.classifier.classify(
                    row["own_words"] or "", kind="reply", vector=vector
                )
                classified = {**row, **_classified(result)}
                # Another node or an operator's label may have got there first: index theirs.
                row = classified if await self._save_classification(classified) else (
                    await self.store.get(row["id"])
                )
            store = await self.qdrant.ready_store()
            [words] = await self.qdrant.analyser.analyse_off_loop(
                [inbound_words(row)], await store.has_sparse(self.collection)
            )
            payload = inbound_payload(row, self.embedder.model, words.language)
            point = checked_point(row["id"], np.asarray(vector), payload, words.sparse)
            await store.upsert(self.collection, [point])
        except (EmbedderUnavailable, VectorStoreUnavailable) as exc:
            logger.warning("inbound_analysis_deferred", extra={"inbound_id": row["id"],
                                                               "error": exc.message})
            return False
        except EmailSenderError as exc:
            self.counters["failed"] += 1
            logger.error("inbound_analysis_failed", extra={"inbound_id": row["id"],
                                                           "error": exc.message})
            await self.store.update(row["id"], vector_state="failed")
            return False
        if await self.store.mark_indexed(row["id"], row["intent"]):
            self.counters["indexed"] += 1
        return True

    async def _save_classification(self, row: dict[str, Any]) -> bool:
        values = {key: row[key] for key in CLASSIFICATION}
        if not await self.store.save_classification(row["id"], values):
            return False
        self.counters["classified"] += 1
        metrics.replies_classified.labels(row["intent"], row["layer"]).inc()
        await self.bus.publish(
            "reply.classified",
            inbound_id=row["id"], email_id=row["email_id"], intent=row["intent"],
            confidence=row["confidence"], layer=row["layer"],
            needs_review=bool(row["needs_review"]),
        )
        return True

    async def process_pending(self) -> int:
        """One round over the messages still pending; answer how many were done."""
        done = 0
        for row in await self.store.pending(PENDING_BATCH):
            try:
                processed = await self.process(row)
            except Exception:  # a bug on one message must not hold every later one
                self.counters["failed"] += 1
                logger.exception("inbound_analysis_crashed", extra={"inbound_id": row["id"]})
                await self.store.update(row["id"], vector_state="failed")
                continue
            if not processed:
                break
            done += 1
        return done


def _classified(result: Classification) -> dict[str, Any]:
    return {
        "intent": result.intent,
        "confidence": round(float(result.confidence), 4),
        "layer": result.layer,
        "needs_review": int(result.needs_review),
        "scores": {name: round(float(score), 4) for name, score in result.scores.items()},
    }
