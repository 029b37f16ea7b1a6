"""The reply classifier's layers, validation and training, on the offline hashing embedder."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from email_sender.classify import (
    AUTOMATIC,
    INTENTS,
    Classification,
    Example,
    ReplyClassifier,
    shipped_examples,
)
from email_sender.classify.model import (
    CORRECTION_WEIGHT,
    EXAMPLE_WEIGHT,
    MAX_TEXT_CHARS,
    IntentModel,
    fit_intent_model,
)
from email_sender.errors import DimensionMismatch, ValidationError
from email_sender.vectors.embedders import HashingEmbedder


@pytest.fixture
def classifier() -> ReplyClassifier:
    return ReplyClassifier(HashingEmbedder(), threshold=0.5)


def test_shipped_examples_cover_every_intent_in_both_languages() -> None:
    examples = shipped_examples()
    half = len(examples) // 2

    for language in (examples[:half], examples[half:]):
        counts = Counter(example.intent for example in language)
        assert set(counts) == set(INTENTS)
        assert all(50 <= count <= 70 for count in counts.values()), counts
        assert len({example.text for example in language}) == len(language)


def test_extra_examples_are_read_from_the_configured_folder(tmp_path: Path) -> None:
    line = {"text": "On vous prend pour la fête de la musique", "intent": "confirmed"}
    (tmp_path / "venue.jsonl").write_text(json.dumps(line) + "\n\n", encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not examples", encoding="utf-8")

    examples = shipped_examples(tmp_path)

    assert examples[-1] == Example(line["text"], "confirmed")
    assert len(examples) == len(shipped_examples()) + 1


@pytest.mark.parametrize(
    "line",
    ['{"text": "ok", "intent": "maybe"}', '{"text": "", "intent": "declined"}', "not json"],
)
def test_a_bad_extra_example_names_its_file_and_line(tmp_path: Path, line: str) -> None:
    (tmp_path / "bad.jsonl").write_text('{"text": "fine", "intent": "question"}\n' + line)

    with pytest.raises(ValidationError) as caught:
        shipped_examples(tmp_path)

    assert caught.value.field == "examples"
    assert "bad.jsonl:2" in caught.value.reason


@pytest.mark.parametrize("kind", AUTOMATIC)
async def test_automatic_kinds_are_decided_by_the_headers(
    classifier: ReplyClassifier, kind: str
) -> None:
    result = await classifier.classify("Thanks, we'd love to book you!", kind=kind)

    assert result == Classification(kind, 1.0, "headers", False, {kind: 1.0})
    assert not classifier.trained  # no model was needed


async def test_unsubscribe_wording_is_decided_by_the_rules(classifier: ReplyClassifier) -> None:
    result = await classifier.classify("Merci de me retirer de votre liste.")

    assert (result.intent, result.layer, result.confidence) == ("unsubscribe", "rules", 1.0)
    assert not result.needs_review


async def test_other_replies_go_to_the_embedding_layer(classifier: ReplyClassifier) -> None:
    result = await classifier.classify("Confirmed for March 3, contract to follow.")

    assert classifier.trained
    assert result.layer == "embedding"
    assert set(result.scores) == set(INTENTS)
    assert sum(result.scores.values()) == pytest.approx(1.0)
    assert result.confidence == max(result.scores.values())
    assert result.intent == max(result.scores, key=result.scores.__getitem__)
    assert result.needs_review == (result.confidence < 0.5)
    assert all(0.0 <= score <= 1.0 for score in result.scores.values())


# Every vector the same: whatever these models tell apart, they tell from the text view.
_BLIND = np.ones((1, 8), dtype=np.float32)
_WORDED = [
    Example("Quel est votre cachet pour une soirée ?", "negotiating"),
    Example("Votre tarif est-il négociable ?", "negotiating"),
    Example("Combien coûte le concert ?", "negotiating"),
    Example("Vous avez une fiche technique ?", "question"),
    Example("Combien de musiciens sur scène ?", "question"),
    Example("Il vous faut une loge ?", "question"),
    Example("Désolé, pas possible cette année.", "declined"),
    Example("Malheureusement nous ne pourrons pas.", "declined"),
]


def _fitted(
    examples: list[Example], weights: list[float] | None = None, *, read_text: bool = True
) -> IntentModel:
    return fit_intent_model(
        np.repeat(_BLIND, len(examples), axis=0),
        [example.intent for example in examples],
        weights or [EXAMPLE_WEIGHT] * len(examples),
        [example.text for example in examples] if read_text else None,
    )


def test_the_text_view_reads_wording_the_vector_does_not_carry() -> None:
    model = _fitted(_WORDED)
    vector_only = _fitted(_WORDED, read_text=False)

    # No accents, a typo: the character n-grams still match.
    scores = model.scores(_BLIND[0], "votre tarif cest combien pour une soiree")
    blind = vector_only.scores(_BLIND[0])

    assert max(scores, key=scores.__getitem__) == "negotiating"
    assert sum(scores.values()) == pytest.approx(1.0)
    assert all(0.0 <= score <= 1.0 for score in scores.values())
    assert scores["negotiating"] > blind["negotiating"]
    assert model.reads_text and not vector_only.reads_text


def test_a_model_that_reads_text_refuses_a_vector_alone() -> None:
    model = _fitted(_WORDED)

    with pytest.raises(ValueError):
        model.scores(_BLIND[0])


def test_a_correction_weighs_in_the_text_view() -> None:
    reply = "Vous avez besoin d'un piano sur scène ?"
    correction = Example("Besoin d'un piano ?", "negotiating")
    examples = [*_WORDED, correction]

    as_example = _fitted(examples)
    as_correction = _fitted(examples, [EXAMPLE_WEIGHT] * len(_WORDED) + [CORRECTION_WEIGHT])

    before = as_example.scores(_BLIND[0], reply)["negotiating"]
    after = as_correction.scores(_BLIND[0], reply)
    assert after["negotiating"] > before
    assert max(after, key=after.__getitem__) == "negotiating"


async def test_a_reply_without_own_words_always_needs_review() -> None:
    confident = ReplyClassifier(HashingEmbedder(), threshold=0.0)

    result = await confident.classify("   ")

    assert result.intent in INTENTS
    assert result.needs_review


async def test_threshold_decides_needs_review() -> None:
    strict = ReplyClassifier(HashingEmbedder(), threshold=1.0)
    lenient = ReplyClassifier(HashingEmbedder(), threshold=0.0)
    reply = "Quel est votre cachet pour une date en mars ?"

    assert (await strict.classify(reply)).needs_review
    assert not (await lenient.classify(reply)).needs_review


async def test_learn_refuses_an_unknown_intent(classifier: ReplyClassifier) -> None:
    with pytest.raises(ValidationError) as caught:
        await classifier.learn(Example("on verra", "maybe_later"))

    assert caught.value.field == "intent"
    for intent in INTENTS:
        assert intent in caught.value.reason
    assert caught.value.details["allowed"] == list(INTENTS)
    assert classifier.corrections == []


async def test_train_refuses_an_unknown_intent(classifier: ReplyClassifier) -> None:
    with pytest.raises(ValidationError):
        await classifier.train([Example("ok", "interested"), Example("hmm", "perhaps")])


async def test_one_label_changes_the_next_classification_of_a_similar_reply(
    classifier: ReplyClassifier,
) -> None:
    similar = "Nous reviendrons vers vous à la rentrée pour la programmation"
    unrelated = "Contract signed and sent back this morning, looking forward to it."
    before = await classifier.classify(similar)
    unrelated_before = await classifier.classify(unrelated)
    label = "question" if before.intent != "question" else "declined"

    await classifier.learn(Example("Nous reviendrons vers vous à la rentrée", label))

    assert (await classifier.classify(similar)).intent == label
    assert (await classifier.classify(unrelated)).intent == unrelated_before.intent


async def test_a_newer_label_of_the_same_text_replaces_the_older(
    classifier: ReplyClassifier,
) -> None:
    await classifier.learn(Example("On verra plus tard", "declined"))
    await classifier.learn(Example("On verra plus tard", "interested"))

    assert classifier.corrections == [Example("On verra plus tard", "interested")]


async def test_train_replaces_the_corrections_held(classifier: ReplyClassifier) -> None:
    await classifier.learn(Example("On verra plus tard", "declined"))

    await classifier.train([Example("Peut-être en 2026", "interested")])

    assert classifier.corrections == [Example("Peut-être en 2026", "interested")]


async def test_long_texts_are_capped(classifier: ReplyClassifier) -> None:
    await classifier.learn(Example("x " * 10_000, "question"))

    assert len(classifier.corrections[0].text) == MAX_TEXT_CHARS
    result = await classifier.classify("yes " * 10_000)
    assert result.intent in INTENTS


async def test_a_precomputed_vector_is_used_as_given(classifier: ReplyClassifier) -> None:
    embedder = HashingEmbedder()
    reply = "Sorry, we are fully booked until next summer."

    given = await classifier.classify(reply, vector=await embedder.embed_one(reply))
    computed = await classifier.classify(reply)

    assert given == computed
    with pytest.raises(DimensionMismatch):
        await classifier.classify(reply, vector=np.ones(12, dtype=np.float32))


async def test_classify_keeps_answering_while_training(classifier: ReplyClassifier) -> None:
    await classifier.train()
    replies = [f"Pouvez-vous jouer le {day} mars ?" for day in range(1, 29)]

    training = asyncio.create_task(classifier.train([Example("On verra", "declined")]))
    results = await asyncio.wait_for(
        asyncio.gather(*(classifier.classify(reply) for reply in replies)), timeout=30
    )
    await asyncio.wait_for(training, timeout=30)

    assert all(result.intent in INTENTS for result in results)
    assert classifier.corrections == [Example("On verra", "declined")]


async def test_concurrent_first_classifications_share_one_fit() -> None:
    classifier = ReplyClassifier(HashingEmbedder())
    fits = 0
    original = classifier._fit

    async def counted_fit() -> None:
        nonlocal fits
        fits += 1
        await original()

    classifier._fit = counted_fit  # type: ignore[method-assign]
    await asyncio.wait_for(
        asyncio.gather(*(classifier.classify(f"reply {n}") for n in range(5))), timeout=30
    )

    assert fits == 1
