"""The reply classifier: what a reply to an outreach email means, in three layers.

1. headers: a kind decided upstream from the message headers (auto-reply, out-of-office, bounce,
   complaint) is taken as is; such messages never count as a human reply.
2. rules: a few explicit patterns (:mod:`email_sender.classify.rules`), unsubscribe first.
3. embedding: the reply's own words, read as a sentence vector and as character n-grams, through
   a model fitted on the shipped examples and the user's corrections
   (:mod:`email_sender.classify.model`).

Only the embedding layer can be unsure: its answer carries ``needs_review`` when the top
probability is under the threshold, and always when the reply has no words of its own.

Training swaps the fitted model in one assignment, so a classification running meanwhile uses
either the old model or the new one, never a half-built one. Vectors of examples are cached per
text, so a refit after one correction embeds only that correction.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from email_sender.classify.model import (
    CORRECTION_WEIGHT,
    EXAMPLE_WEIGHT,
    Example,
    IntentModel,
    bounded_text,
    fit_intent_model,
    shipped_examples,
    validate_intent,
)
from email_sender.classify.rules import match_rules
from email_sender.errors import DimensionMismatch
from email_sender.vectors.embedders import Embedder

logger = logging.getLogger(__name__)

AUTOMATIC = ("auto_reply", "out_of_office", "bounce", "complaint")
LAYERS = ("headers", "rules", "embedding")
# The newest corrections are kept: an older label of the same text is superseded anyway, and
# the bound keeps a refit's cost independent of how long the service has been labelled.
MAX_CORRECTIONS = 5000


@dataclass(frozen=True)
class Classification:
    """A reply's intent, how sure the classifier is and which layer decided."""

    intent: str
    confidence: float
    layer: str
    needs_review: bool
    scores: dict[str, float] = field(default_factory=dict)


# The examples' vectors, shared by every classifier of the process for one embedder: the same
# few hundred texts are not embedded again for each node built (tests build many).
_SHIPPED_VECTORS: dict[tuple[str, int], dict[str, np.ndarray]] = {}
MAX_SHARED_VECTORS = 20_000


class ReplyClassifier:
    """Classifies the own words of a reply (quoted text already removed) into an intent."""

    def __init__(
        self,
        embedder: Embedder,
        *,
        threshold: float = 0.5,
        examples: Sequence[Example] | None = None,
    ) -> None:
        self.embedder = embedder
        self.threshold = threshold
        chosen = shipped_examples() if examples is None else examples
        self._examples = [_checked(example) for example in chosen]
        self._corrections: dict[str, Example] = {}
        self._model: IntentModel | None = None
        self._vectors: dict[str, np.ndarray] = {}
        self._train_lock = asyncio.Lock()

    @property
    def trained(self) -> bool:
        return self._model is not None

    @property
    def corrections(self) -> list[Example]:
        """The corrections the current training set holds, oldest first."""
        return list(self._corrections.values())

    async def train(self, corrections: Sequence[Example] = ()) -> None:
        """Fit on the examples plus ``corrections``, which replace the corrections held so far.

        The service passes every stored label here at start; :meth:`learn` adds one at a time.
        """
        checked = [_checked(correction) for correction in corrections]
        async with self._train_lock:
            self._corrections = {}
            self._remember(checked)
            await self._fit()

    async def learn(self, correction: Example) -> None:
        """Add one correction (the newest label of a text wins) and refit."""
        checked = _checked(correction)
        async with self._train_lock:
            self._remember([checked])
            await self._fit()

    async def classify(
        self, own_words: str, *, kind: str = "reply", vector: np.ndarray | None = None
    ) -> Classification:
        """The intent of a reply; ``vector`` is its precomputed embedding of ``own_words``."""
        if kind in AUTOMATIC:
            return Classification(kind, 1.0, "headers", False, {kind: 1.0})
        rule = match_rules(own_words)
        if rule is not None:
            return Classification(rule.intent, 1.0, "rules", False, {rule.intent: 1.0})
        return await self._classify_by_meaning(bounded_text(own_words), vector)

    async def _classify_by_meaning(self, text: str, vector: np.ndarray | None) -> Classification:
        model = await self._trained_model()
        if vector is None:
            vector = await self.embedder.embed_one(text)
        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        if vector.shape[0] != model.dimension:
            raise DimensionMismatch(vector.shape[0], model.dimension)
        scores = model.scores(vector, text)
        intent = max(scores, key=lambda name: scores[name])
        confidence = scores[intent]
        needs_review = confidence < self.threshold or not text
        return Classification(intent, confidence, "embedding", needs_review, scores)

    async def _trained_model(self) -> IntentModel:
        model = self._model
        if model is None:
            # The first classification trains; concurrent first ones wait for that one fit.
            async with self._train_lock:
                if self._model is None:
                    await self._fit()
            model = self._model
            assert model is not None
        return model

    def _remember(self, corrections: Sequence[Example]) -> None:
        for correction in corrections:
            # Re-inserting moves a relabelled text to the newest end of the dict.
            self._corrections.pop(correction.text, None)
            self._corrections[correction.text] = correction
        while len(self._corrections) > MAX_CORRECTIONS:
            del self._corrections[next(iter(self._corrections))]

    async def _fit(self) -> None:
        started = time.perf_counter()
        weighted = [(example, EXAMPLE_WEIGHT) for example in self._examples]
        weighted += [(correction, CORRECTION_WEIGHT) for correction in self._corrections.values()]
        texts = [example.text for example, _ in weighted]
        vectors = await self._vectors_of(texts)
        intents = [example.intent for example, _ in weighted]
        weights = [weight for _, weight in weighted]
        model = await asyncio.to_thread(fit_intent_model, vectors, intents, weights, texts)
        self._model = model
        logger.info(
            "classifier_trained",
            extra={
                "examples": len(self._examples),
                "corrections": len(self._corrections),
                "embedder": self.embedder.model,
                "duration_ms": round((time.perf_counter() - started) * 1000),
            },
        )

    async def _vectors_of(self, texts: list[str]) -> np.ndarray:
        shared = _SHIPPED_VECTORS.setdefault((self.embedder.model, self.embedder.dimension), {})
        for text in texts:
            if text not in self._vectors and text in shared:
                self._vectors[text] = shared[text]
        missing = list(dict.fromkeys(text for text in texts if text not in self._vectors))
        if missing:
            fresh = await self.embedder.embed(missing)
            self._vectors.update(zip(missing, fresh, strict=True))
            examples = {example.text for example in self._examples}
            if len(shared) < MAX_SHARED_VECTORS:
                shared.update((text, self._vectors[text]) for text in missing if text in examples)
        # Only texts still in the training set keep their cached vector.
        wanted = set(texts)
        for text in [text for text in self._vectors if text not in wanted]:
            del self._vectors[text]
        return np.vstack([self._vectors[text] for text in texts])


def _checked(example: Example) -> Example:
    validate_intent(example.intent)
    return Example(bounded_text(example.text), example.intent)
