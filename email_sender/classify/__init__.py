"""Reply classification: what a human reply to an outreach email means.

Venues and bookers answer in French or English; each reply gets one intent (``interested``,
``negotiating``, ``confirmed``, ``declined``, ``question``, ``unsubscribe``) or, for messages
the headers already mark as automatic, that kind. The meaning is read from a sentence embedding,
not from keywords, so "pas possible" is a refusal even though it contains "possible"; character
n-grams of the same words add what that English-trained embedding reads poorly (French, typos,
missing accents). Users' corrections retrain the model; the ``classifier`` config section sets
the review threshold and a folder of extra examples.
"""

from __future__ import annotations

from email_sender.classify.classifier import (
    AUTOMATIC,
    LAYERS,
    Classification,
    ReplyClassifier,
)
from email_sender.classify.model import INTENTS, Example, shipped_examples
from email_sender.classify.rules import RuleMatch, match_rules

__all__ = [
    "AUTOMATIC",
    "INTENTS",
    "LAYERS",
    "Classification",
    "Example",
    "ReplyClassifier",
    "RuleMatch",
    "match_rules",
    "shipped_examples",
]
