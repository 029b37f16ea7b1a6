"""The rules layer: unsubscribe wording is matched first and only where it is a request."""

from __future__ import annotations

import time

import pytest

from email_sender.classify.model import INTENTS, shipped_examples
from email_sender.classify.rules import RULES, match_rules


@pytest.mark.parametrize(
    "text",
    [
        "STOP",
        "stop merci",
        "Stop.",
        "Unsubscribe",
        "Please unsubscribe me from this list.",
        "Please remove me from your mailing list.",
        "Take me off your list, thanks",
        "Merci de me retirer de votre liste de diffusion.",
        "Retirez-moi de votre liste svp",
        "Je souhaite me désinscrire.",
        "Je ne souhaite plus recevoir vos mails.",
        "Pour ne plus recevoir ces messages, merci de faire le nécessaire.",
        "Désinscription",
        # A negation elsewhere in the reply does not cancel the request.
        "We're not going to take this further. Please remove me from your list.",
        "Ce n'est pas pour nous. Merci de me retirer de votre liste.",
    ],
)
def test_unsubscribe_requests_are_matched(text: str) -> None:
    match = match_rules(text)

    assert match is not None, text
    assert match.intent == "unsubscribe"


@pytest.mark.parametrize(
    "text",
    [
        "Please don't unsubscribe me, we are interested!",
        "No need to remove me from the list, I'll reply next week.",
        "We'll stop by the venue on Friday to talk about it.",
        "Stop the press: we have a free slot on the 12th!",
        "Pas besoin de me désinscrire, on en reparle en septembre.",
    ],
)
def test_the_wording_without_the_request_is_left_to_the_model(text: str) -> None:
    assert match_rules(text) is None


def test_unsubscribe_is_checked_before_any_other_rule() -> None:
    assert RULES[0].intent == "unsubscribe"
    assert match_rules("Confirmed for March 3, but unsubscribe me from the newsletter") is not None


@pytest.mark.parametrize(
    "text",
    [
        "pas possible",
        "Malheureusement ce n'est pas possible pour nous cette saison",
        "Ce n'est pas possible, désolé",
        "C'est possible pour nous !",
        "not possible, sorry",
    ],
)
def test_no_rule_reads_possible_as_interest(text: str) -> None:
    match = match_rules(text)

    assert match is None or match.intent != "interested"


def test_no_rule_decides_anything_but_unsubscribe() -> None:
    # Meaning is the embedding layer's job: every rule is an explicit unsubscribe wording.
    assert {rule.intent for rule in RULES} == {"unsubscribe"}


def test_rules_never_fire_on_a_shipped_example_of_another_intent() -> None:
    wrong = [
        (example.text, match.rule)
        for example in shipped_examples()
        if example.intent != "unsubscribe" and (match := match_rules(example.text))
    ]

    assert wrong == []


def test_empty_and_blank_text_match_nothing() -> None:
    assert match_rules("") is None
    assert match_rules("  \n ") is None


@pytest.mark.parametrize(
    "hostile",
    [
        "stop" + "!" * 50_000 + "x",
        "not " + "a" * 50_000,
        "retirez-moi " + "' " * 50_000,
        ("don't " + "word " * 3) * 10_000,
    ],
)
def test_hostile_text_is_matched_in_bounded_time(hostile: str) -> None:
    started = time.perf_counter()
    match_rules(hostile)

    assert time.perf_counter() - started < 0.5


def test_intents_are_the_six_human_ones() -> None:
    assert INTENTS == (
        "interested", "negotiating", "confirmed", "declined", "question", "unsubscribe"
    )
