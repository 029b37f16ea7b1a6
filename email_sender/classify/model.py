"""The meaning layer of the reply classifier: training examples and the fitted intent model.

The model reads a reply two ways and averages the two probability distributions:

- its sentence vector, through a multinomial logistic regression on L2-normalised vectors: the
  meaning, so "pas possible" and "possible" part ways although they share a word;
- its characters, through a logistic regression on tf-idf character n-grams (2 to 5 within
  words, accents stripped): the wording, which carries French, typos and missing accents that
  the English-trained embedding model reads poorly.

On five folds of the shipped examples the average beats either view alone (figures at
:data:`TEXT_VIEW_SHARE`). User corrections are examples like the others with a higher sample
weight in both views, so that one label moves the next classification of a similar reply.

Fitting is CPU work of under a second: callers run :func:`fit_intent_model` in a worker thread.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from scipy.sparse import csr_matrix
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from email_sender.errors import ValidationError

INTENTS = ("interested", "negotiating", "confirmed", "declined", "question", "unsubscribe")
MAX_TEXT_CHARS = 2000
EXAMPLE_WEIGHT = 1.0
# Large enough that one correction outweighs its few nearest shipped examples, small enough
# that it moves only replies close to it rather than a whole region of the space.
CORRECTION_WEIGHT = 8.0
# Inverse regularisation strength: unit vectors have small coordinates, so a weak penalty lets
# the model use them. On 5 folds of the shipped examples: 0.83 at C=1, 0.85 at 3, 0.87 at 10 and
# 30; nearest centroids 0.66.
REGULARISATION_C = 10.0
# The character view's regularisation: tf-idf rows are unit length too, and its five-fold
# accuracy rose from C=10 to C=30.
TEXT_REGULARISATION_C = 30.0
TEXT_NGRAMS = (2, 5)
# The text view's share of the averaged probabilities. Five folds (three shuffles) of the 742
# shipped examples, accuracy: embedding alone 0.85 (fr 0.82, en 0.88), characters alone 0.91,
# average at share 0.5: 0.92 (fr 0.92, en 0.93), macro-F1 0.92; share 0.4 within 0.01. Word
# n-grams next to the characters, or one model on both stacked, measured the same within 0.01.
TEXT_VIEW_SHARE = 0.5
# Same optimum as the default lbfgs, reached in a few Newton steps: several times faster here.
SOLVER = "newton-cg"
SHIPPED_LANGUAGES = ("fr", "en")


@dataclass(frozen=True)
class Example:
    """One reply text and the intent it means."""

    text: str
    intent: str


def validate_intent(intent: str) -> str:
    """``intent`` if it is one of :data:`INTENTS`, else a ValidationError naming the field."""
    if intent not in INTENTS:
        raise ValidationError(
            "intent",
            f"{intent!r} is not an intent; allowed: {', '.join(INTENTS)}",
            allowed=list(INTENTS),
        )
    return intent


def bounded_text(text: str) -> str:
    """The text as the classifier sees it: stripped and capped at :data:`MAX_TEXT_CHARS`."""
    return text.strip()[:MAX_TEXT_CHARS]


def shipped_examples(extra_dir: Path | None = None) -> list[Example]:
    """The packaged French and English examples, plus every ``*.jsonl`` file in ``extra_dir``.

    ``extra_dir`` is the ``classifier.examples`` setting. A line with an unknown intent or
    without text is a ValidationError naming the file and line, so a typo never trains silently.
    """
    examples: list[Example] = []
    package = resources.files("email_sender.classify") / "examples"
    for language in SHIPPED_LANGUAGES:
        resource = package / f"{language}.jsonl"
        examples.extend(parse_examples(resource.read_text(encoding="utf-8"), str(resource)))
    if extra_dir is not None:
        for path in sorted(Path(extra_dir).glob("*.jsonl")):
            examples.extend(parse_examples(path.read_text(encoding="utf-8"), str(path)))
    return examples


def parse_examples(jsonl: str, source: str) -> list[Example]:
    """Examples from JSON lines of ``{"text": ..., "intent": ...}``; blank lines are skipped."""
    examples = []
    for number, line in enumerate(jsonl.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{source}:{number}"
        try:
            record = json.loads(line)
            text, intent = record["text"], record["intent"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ValidationError(
                "examples", f'{where}: expected {{"text": ..., "intent": ...}} ({exc})'
            ) from exc
        if not isinstance(text, str) or not text.strip():
            raise ValidationError("examples", f"{where}: text must be a non-empty string")
        if intent not in INTENTS:
            raise ValidationError(
                "examples", f"{where}: unknown intent {intent!r}; allowed: {', '.join(INTENTS)}"
            )
        examples.append(Example(bounded_text(text), intent))
    return examples


class IntentModel:
    """A fitted intent model: probabilities over :data:`INTENTS` for a reply's vector and text.

    A model fitted without texts has the embedding view alone; one fitted with texts needs the
    text of every reply it scores.
    """

    def __init__(
        self,
        embedding: LogisticRegression,
        dimension: int,
        text: tuple[TfidfVectorizer, LogisticRegression] | None = None,
    ) -> None:
        self._embedding = embedding
        self.dimension = dimension
        self._text = text

    @property
    def reads_text(self) -> bool:
        return self._text is not None

    def scores(self, vector: np.ndarray, text: str | None = None) -> dict[str, float]:
        """Each intent's probability (intents absent from training score 0); they sum to 1."""
        probabilities = _in_intents_order(self._embedding, normalise(vector.reshape(1, -1)))
        if self._text is not None:
            if text is None:
                raise ValueError("this model reads the reply's text: pass it with the vector")
            vectorizer, estimator = self._text
            by_text = _in_intents_order(estimator, vectorizer.transform([text]))
            probabilities = (1 - TEXT_VIEW_SHARE) * probabilities + TEXT_VIEW_SHARE * by_text
        return {intent: float(p) for intent, p in zip(INTENTS, probabilities, strict=True)}


def fit_intent_model(
    vectors: np.ndarray,
    intents: Sequence[str],
    weights: Sequence[float],
    texts: Sequence[str] | None = None,
) -> IntentModel:
    """Fit on one row per example, plus the text view when ``texts`` are given.

    Blocking: run it in a worker thread.
    """
    if len(set(intents)) < 2:
        raise ValidationError("examples", "training needs examples of at least two intents")
    sample_weight = np.asarray(weights, dtype=np.float64)
    embedding = LogisticRegression(C=REGULARISATION_C, solver=SOLVER, max_iter=2000)
    embedding.fit(normalise(vectors), list(intents), sample_weight=sample_weight)
    text_view = None
    if texts is not None:
        text_view = _fit_text_view(texts, intents, sample_weight)
    return IntentModel(embedding, vectors.shape[1], text_view)


def _fit_text_view(
    texts: Sequence[str], intents: Sequence[str], sample_weight: np.ndarray
) -> tuple[TfidfVectorizer, LogisticRegression]:
    vectorizer = TfidfVectorizer(
        analyzer="char_wb", ngram_range=TEXT_NGRAMS, sublinear_tf=True, strip_accents="unicode"
    )
    matrix = vectorizer.fit_transform(list(texts))
    estimator = LogisticRegression(C=TEXT_REGULARISATION_C, solver=SOLVER, max_iter=2000)
    estimator.fit(matrix, list(intents), sample_weight=sample_weight)
    return vectorizer, estimator


def _in_intents_order(estimator: LogisticRegression, rows: np.ndarray | csr_matrix) -> np.ndarray:
    """The first row's probabilities in :data:`INTENTS` order, 0 for an intent never seen."""
    # The estimator orders its classes alphabetically and knows only those it was fitted on.
    probabilities = np.zeros(len(INTENTS))
    fitted = estimator.predict_proba(rows)[0]
    for column, intent in enumerate(estimator.classes_):
        probabilities[INTENTS.index(intent)] = fitted[column]
    return probabilities


def normalise(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), float64 for the estimator."""
    matrix = np.asarray(matrix, dtype=np.float64)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0.0, 1.0, norms)
