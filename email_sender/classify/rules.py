"""The rules layer of the reply classifier: a few high-precision patterns, unsubscribe first.

Rules exist for what must never be missed or guessed: a request to stop receiving mail is a
legal obligation, so it is matched by explicit wording before any model has a say. Everything
else is meaning, and meaning is the embedding layer's job; a rule that fires on a word ("possible")
instead of a meaning ("pas possible") is the mistake this layer is kept small to avoid.

Every pattern is linear-time: no nested or adjacent unbounded repetitions, and the text is capped
before matching.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from email_sender.classify.model import bounded_text

_FLAGS = re.IGNORECASE | re.UNICODE


@dataclass(frozen=True)
class Rule:
    """A named pattern that, when found in a reply's own words, decides its intent."""

    name: str
    intent: str
    pattern: re.Pattern[str]


@dataclass(frozen=True)
class RuleMatch:
    """The rule that decided, and the words it matched."""

    rule: str
    intent: str
    matched: str


def _rule(name: str, intent: str, pattern: str) -> Rule:
    return Rule(name, intent, re.compile(pattern, _FLAGS))


# Checked in order; the first rule whose pattern matches (and is not negated) decides.
RULES: tuple[Rule, ...] = (
    # The whole reply is one stop word, perhaps with a courtesy: "STOP", "stop merci".
    _rule(
        "stop_alone",
        "unsubscribe",
        r"^\W*(?:stop|unsubscribe|d[ée]sinscription|d[ée]sabonnement)"
        r"(?:\W+(?:please|pls|thanks|thank you|merci|svp|stp|s'il vous pla[iî]t))?\W*$",
    ),
    _rule("unsubscribe", "unsubscribe", r"\bunsubscribe\b|\bopt\s?me\s?out\b"),
    _rule(
        "remove_from_list",
        "unsubscribe",
        r"\b(?:remove|take|drop)\s+(?:me|my\s+(?:e-?mail|address))\s+(?:off|from)\s+"
        r"(?:your|the|this)\s+(?:\w+\s+)?(?:list|mailings?)\b",
    ),
    _rule("desinscrire", "unsubscribe", r"\bd[ée]s(?:inscri|abonn)"),
    _rule(
        "ne_plus_recevoir",
        "unsubscribe",
        r"\bne\s+(?:plus|pas|(?:veux|souhaite|d[ée]sire|voudrais)\s+plus)\s+recevoir\b",
    ),
    _rule(
        "retirez_moi",
        "unsubscribe",
        r"\b(?:(?:retirez|supprimez|enlevez|rayez)[-\s]+moi"
        r"|(?:me|m')\s*(?:retirer|supprimer|enlever|rayer)"
        r"|(?:retirez|retirer|supprimez|supprimer|enlevez|enlever)\s+mon\s+adresse)"
        r"[\s\w']{0,30}?\b(?:listes?|fichiers?|envois?|mailing|contacts)\b",
    ),
)

# "please don't unsubscribe me", "no need to remove me from the list": the wording is there,
# the request is not. Bounded gap of at most three words between the negation and the verb.
# Characters before a request in which its negation may stand.
NEGATION_REACH = 80
_NEGATED = re.compile(
    r"\b(?:don['\u2019]?t|do\s+not|not|never|no\s+need\s+to|pas\s+besoin\s+de)\s+"
    r"(?:\w+\s+){0,3}?(?:unsubscribe|remove|take|d[ée]sinscri|d[ée]sabonn|retir)",
    _FLAGS,
)


def match_rules(own_words: str) -> RuleMatch | None:
    """The first rule that decides this reply's intent, or None to leave it to the model."""
    text = bounded_text(own_words)
    if not text:
        return None
    for rule in RULES:
        found = rule.pattern.search(text)
        if found is None:
            continue
        if _negated(text, found.start()):
            return None
        return RuleMatch(rule.name, rule.intent, found.group(0))
    return None


def _negated(text: str, at: int) -> bool:
    """Whether a negation governs the request found at ``at``: one whose verb reaches into it
    ("don't unsubscribe me"), not one elsewhere in the reply ("not this year. Remove me…")."""
    window_start = max(0, at - NEGATION_REACH)
    return any(
        negation.end() > at
        for negation in _NEGATED.finditer(text, window_start, at + NEGATION_REACH)
    )
