"""The keyword workflow that classified replies before the embedding classifier: the baseline.

It is reproduced as it behaved, flaws included, so that the benchmark measures the real gain:

* the subject and the whole body are lower-cased and searched together, quoted original and
  signature included (the workflow never stripped quotes, so a reply quoting "Seriez-vous
  intéressé ?" counts as interested whatever it says);
* a keyword matches as a plain substring ("possible" inside "pas possible", "fee" inside
  "coffee", "complet" inside "complete"): no word boundaries, no negation, no accent folding;
* a subject naming an absence ("absence", "out of office", "automatic reply") gives
  ``out_of_office`` before anything else; no other header or automatic kind was looked at, so
  ``auto_reply`` and ``unsubscribe`` are never predicted;
* the lists are tried in a fixed order, first match wins: interested, negotiating, confirmed,
  declined, then ``question`` when the text holds a "?";
* nothing matched gives ``other``, which the workflow left for a human and which the benchmark
  counts as wrong for every item.
"""

from __future__ import annotations

OTHER = "other"

ABSENCE_SUBJECT_MARKERS = ("absence", "out of office", "automatic reply")

# Order matters: the first list with a match decides.
KEYWORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "interested",
        ("intéressé", "intéressant", "avec plaisir", "possible", "pourquoi pas",
         "interested", "sounds good"),
    ),
    ("negotiating", ("tarif", "cachet", "prix", "budget", "conditions", "fee", "rate")),
    ("confirmed", ("confirm", "c'est bon", "validé", "ok pour")),
    (
        "declined",
        ("désolé", "malheureusement", "pas possible", "complet", "sorry", "unfortunately"),
    ),
)

QUESTION_MARK = "?"


def classify(subject: str, text: str) -> str:
    """The label the keyword workflow gave a reply with this subject and body."""
    lowered_subject = subject.lower()
    if any(marker in lowered_subject for marker in ABSENCE_SUBJECT_MARKERS):
        return "out_of_office"
    haystack = f"{lowered_subject}\n{text.lower()}"
    for label, keywords in KEYWORDS:
        if any(keyword in haystack for keyword in keywords):
            return label
    if QUESTION_MARK in haystack:
        return "question"
    return OTHER
