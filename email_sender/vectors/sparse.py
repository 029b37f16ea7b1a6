"""BM25 sparse vectors of a text, analysed in its own language.

An email's language is detected (``lingua``, among ``search.languages`` only) and stored in its
payload as ``lang``; its text is then tokenised, lower-cased, folded to ASCII ("Quimperlé" and
"quimperle" are one term), stripped of that language's stop words and stemmed ("concerts" and
"concert" are one term) by Qdrant Edge's ``Bm25`` model. A document's weights are BM25 term
frequencies; the store multiplies them by each term's IDF at query time, so a term found in few
emails (a town, an invoice number, a name) weighs far more than a common one.

A query is too short for its language to be told reliably ("Quimperlé", "facture FAC-2026-0502"),
so it is analysed in every configured language and its terms are the union, each of weight 1: a
document only holds the terms of its own language, so the terms of the other analyses find
nothing to match.

Analysing is CPU work (~0.4 ms for a long email): batches run in a worker thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import qdrant_edge as qe
from lingua import Language, LanguageDetectorBuilder

from email_sender.errors import ConfigError
from email_sender.vectors.store import SparseVector, as_sparse

# ISO 639-1 code: (the Bm25 model's language name, lingua's language).
LANGUAGES: dict[str, tuple[str, Language]] = {
    "da": ("danish", Language.DANISH),
    "de": ("german", Language.GERMAN),
    "en": ("english", Language.ENGLISH),
    "es": ("spanish", Language.SPANISH),
    "fi": ("finnish", Language.FINNISH),
    "fr": ("french", Language.FRENCH),
    "it": ("italian", Language.ITALIAN),
    "nl": ("dutch", Language.DUTCH),
    "no": ("norwegian", Language.BOKMAL),
    "pt": ("portuguese", Language.PORTUGUESE),
    "ru": ("russian", Language.RUSSIAN),
    "sv": ("swedish", Language.SWEDISH),
}
# A longer text only costs time: the first words of an email say what it is about.
MAX_SPARSE_CHARS = 20_000
# Enough words to tell a language; detecting costs ~0.35 ms per thousand characters.
DETECT_CHARS = 2_000


@dataclass(frozen=True, slots=True)
class Analysed:
    """A document's language, and its sparse vector when one is wanted."""

    language: str
    sparse: SparseVector | None


def check_languages(languages: Sequence[str]) -> list[str]:
    """The codes as given, or ConfigError naming the first unknown one."""
    if not languages:
        raise ConfigError("search.languages: give at least one language")
    for code in languages:
        if code not in LANGUAGES:
            raise ConfigError(
                f"search.languages: {code!r} is not one of {', '.join(sorted(LANGUAGES))}"
            )
    return list(dict.fromkeys(languages))


class TextAnalyser:
    """Language detection and BM25 term weights for the configured languages."""

    def __init__(self, languages: Sequence[str] = ("fr", "en")) -> None:
        self.languages = check_languages(languages)
        self._models = {
            code: qe.Bm25(qe.Bm25Config(language=LANGUAGES[code][0], ascii_folding=True))
            for code in self.languages
        }
        self._codes = {LANGUAGES[code][1]: code for code in self.languages}
        self._detector = (
            LanguageDetectorBuilder.from_languages(*self._codes).build()
            if len(self._codes) > 1
            else None
        )

    def language_of(self, text: str) -> str:
        """The configured language the text is most likely in; the first one when unsure."""
        if self._detector is None:
            return self.languages[0]
        found = self._detector.detect_language_of(text[:DETECT_CHARS])
        return self._codes.get(found, self.languages[0]) if found else self.languages[0]

    def document(self, text: str, language: str) -> SparseVector:
        embedded = self._models[language].embed_document(text[:MAX_SPARSE_CHARS])
        return as_sparse(SparseVector(tuple(embedded.indices), tuple(embedded.values)))

    def query_terms(self, text: str) -> dict[str, frozenset[int]]:
        """The query's terms as each configured language analyses them."""
        return {
            code: frozenset(model.embed_query(text[:MAX_SPARSE_CHARS]).indices)
            for code, model in self._models.items()
        }

    def query(self, text: str) -> SparseVector:
        """The union of the query's terms in every configured language, each of weight 1."""
        return union_of_terms(self.query_terms(text))

    def analyse(self, texts: Sequence[str], sparse: bool) -> list[Analysed]:
        analysed = []
        for text in texts:
            language = self.language_of(text)
            analysed.append(Analysed(language, self.document(text, language) if sparse else None))
        return analysed

    async def analyse_off_loop(self, texts: Sequence[str], sparse: bool) -> list[Analysed]:
        """:meth:`analyse` in a worker thread."""
        return await asyncio.to_thread(self.analyse, list(texts), sparse)


def union_of_terms(terms: dict[str, frozenset[int]]) -> SparseVector:
    """The union of a query's terms in every language, each of weight 1."""
    ordered = tuple(sorted(frozenset().union(*terms.values())))
    return SparseVector(ordered, (1.0,) * len(ordered))
