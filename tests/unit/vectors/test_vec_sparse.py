"""The text analyser (language, BM25 terms) and the fusion of the dense and sparse rankings."""

from __future__ import annotations

import pytest

from email_sender.errors import ConfigError
from email_sender.settings import SearchSettings
from email_sender.vectors.fusion import coverage, fuse, rrf, ungated
from email_sender.vectors.sparse import LANGUAGES, TextAnalyser, check_languages
from email_sender.vectors.store import ScoredPoint, SparseVector

ANALYSER = TextAnalyser(["fr", "en"])


def test_every_language_the_settings_accept_is_analysed() -> None:
    accepted = SearchSettings.model_fields["languages"].annotation.__args__[0].__args__
    assert set(accepted) == set(LANGUAGES)
    assert TextAnalyser(sorted(LANGUAGES)).languages == sorted(LANGUAGES)


def test_the_language_of_an_email_is_detected_among_the_configured_ones() -> None:
    assert ANALYSER.language_of("Bonjour, la date du 12 mars est confirmée.") == "fr"
    assert ANALYSER.language_of("Hello, sorry, we had to cancel the show next week.") == "en"
    # Nothing to tell by: the first configured language.
    assert ANALYSER.language_of("12 / 03") == "fr"
    assert TextAnalyser(["en"]).language_of("Bonjour à tous") == "en"


@pytest.mark.parametrize("languages", [[], ["fr", "xx"]])
def test_unknown_or_no_languages_are_refused(languages: list[str]) -> None:
    with pytest.raises(ConfigError, match=r"search\.languages"):
        check_languages(languages)


def test_accents_case_and_inflections_give_the_same_terms() -> None:
    assert ANALYSER.query("Quimperlé") == ANALYSER.query("QUIMPERLE")
    assert ANALYSER.query("concerts annulés") == ANALYSER.query("concert annulé")
    # Stop words are not terms, in their own language.
    assert ANALYSER.query_terms("le la les des")["fr"] == frozenset()
    assert ANALYSER.query_terms("the of and")["en"] == frozenset()
    document = ANALYSER.document("Les concerts à Quimperlé sont confirmés.", "fr")
    assert set(ANALYSER.query("quimperle concert").indices) <= set(document.indices)
    assert all(value > 0 for value in document.values)


def hit(pid: str, score: float, terms: tuple[int, ...] = (), lang: str = "fr") -> ScoredPoint:
    return ScoredPoint(pid, score, {"lang": lang}, SparseVector(terms, (1.0,) * len(terms)))


TERMS = {"fr": frozenset({1, 2, 3}), "en": frozenset({1, 7, 8})}


def test_coverage_counts_the_query_terms_in_the_hits_language() -> None:
    assert coverage(hit("a", 1, (1, 2, 3, 9)), TERMS) == 1.0
    assert coverage(hit("a", 1, (1, 2)), TERMS) == pytest.approx(2 / 3)
    assert coverage(hit("a", 1, (7, 8), lang="en"), TERMS) == pytest.approx(2 / 3)
    # No lang in the payload: the best language.
    assert coverage(ScoredPoint("a", 1, {}, SparseVector((7, 8, 1), (1, 1, 1))), TERMS) == 1.0
    assert coverage(ScoredPoint("a", 1, {}, None), TERMS) == 0.0


def test_an_email_holding_most_query_terms_comes_first_whatever_its_meaning() -> None:
    dense = [hit("meaning", 0.8), hit("other", 0.5), hit("words", 0.3)]
    sparse = [hit("words", 12.0, (1, 2, 3)), hit("other", 3.0, (1,))]
    assert [h.id for h in fuse(dense, sparse, TERMS, 3)] == ["words", "meaning", "other"]
    # A hit of the words alone (not among the dense candidates) gets the lowest cosine brought.
    assert [h.id for h in fuse(dense[:2], sparse, TERMS, 3)] == ["words", "meaning", "other"]
    assert fuse(dense[:2], sparse, TERMS, 3)[0].score == pytest.approx(0.5 + 1.0)


def test_words_covering_too_little_of_the_query_leave_the_order_to_meaning() -> None:
    dense = [hit("meaning", 0.6), hit("shares-a-word", 0.4)]
    sparse = [hit("shares-a-word", 20.0, (1, 9)), hit("x", 19.0, (2,))]
    fused = fuse(dense, sparse, TERMS, 3)
    assert [h.id for h in fused][:2] == ["meaning", "shares-a-word"]
    # Without the gate, the common word wins: what the gate is for.
    assert ungated(dense, sparse, 3)[0].id == "shares-a-word"
    assert [h.id for h in fuse(dense, [], TERMS, 2)] == ["meaning", "shares-a-word"]


def test_rrf_adds_reciprocal_ranks() -> None:
    fused = rrf([hit("a", 0.9), hit("b", 0.8)], [hit("b", 5.0)], 2, k=60)
    assert [h.id for h in fused] == ["b", "a"]
    assert fused[0].score == pytest.approx(1 / 62 + 1 / 61)
