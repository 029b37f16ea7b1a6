"""The reply classification benchmark: its evaluation set, the keyword baseline and the scoring.

The set is checked on its own terms (schema, the eight labels, both languages, no duplicate),
the baseline on the behaviour it must reproduce, and the harness on what it hands the inbound
path (a message that parses back to the item) and on the figures it computes.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest

from benchmarks import classify as harness
from benchmarks import keyword_baseline

DATA = Path(__file__).resolve().parents[2] / "benchmarks" / "data" / "replies.jsonl"
LABELS = {
    "interested", "negotiating", "confirmed", "declined", "question", "unsubscribe",
    "auto_reply", "out_of_office",
}
AUTOMATIC = {"auto_reply", "out_of_office"}
FIELDS = {"id", "lang", "domain", "subject", "headers", "text", "label"}
ID_PATTERN = re.compile(r"^(fr|en)-(booking|business)-\d{3}$")


@pytest.fixture(scope="module")
def items() -> list[dict[str, Any]]:
    with DATA.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def test_every_line_has_the_schema(items: list[dict[str, Any]]) -> None:
    for item in items:
        assert set(item) == FIELDS, item.get("id")
        assert ID_PATTERN.match(item["id"]), item["id"]
        assert item["id"].startswith(f"{item['lang']}-{item['domain']}-")
        assert item["lang"] in {"fr", "en"}
        assert item["domain"] in {"booking", "business"}
        assert isinstance(item["subject"], str) and item["subject"].strip()
        assert isinstance(item["text"], str) and item["text"].strip()
        assert isinstance(item["headers"], dict)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in item["headers"].items())


def test_ids_are_unique(items: list[dict[str, Any]]) -> None:
    duplicated = [ident for ident, n in Counter(i["id"] for i in items).items() if n > 1]
    assert duplicated == []


def test_size_labels_and_languages(items: list[dict[str, Any]]) -> None:
    assert len(items) >= 150
    labels = Counter(item["label"] for item in items)
    assert set(labels) == LABELS
    assert min(labels.values()) >= 15, labels
    languages = Counter(item["lang"] for item in items)
    assert set(languages) == {"fr", "en"}
    assert 0.4 <= languages["fr"] / len(items) <= 0.7, languages
    domains = Counter(item["domain"] for item in items)
    assert 0.55 <= domains["booking"] / len(items) <= 0.85, domains


def test_every_label_in_both_languages(items: list[dict[str, Any]]) -> None:
    pairs = {(item["label"], item["lang"]) for item in items}
    assert pairs == {(label, lang) for label in LABELS for lang in ("fr", "en")}


def test_no_duplicate_texts(items: list[dict[str, Any]]) -> None:
    normalised = Counter(" ".join(item["text"].lower().split()) for item in items)
    assert [text[:60] for text, n in normalised.items() if n > 1] == []


def test_headers_only_on_automatic_mail(items: list[dict[str, Any]]) -> None:
    human_with_headers = [i["id"] for i in items if i["label"] not in AUTOMATIC and i["headers"]]
    assert human_with_headers == []
    automatic = [item for item in items if item["label"] in AUTOMATIC]
    # Detection must work from headers and, for mailers that send none, from the subject.
    assert sum(bool(item["headers"]) for item in automatic) >= 10
    assert sum(not item["headers"] for item in automatic) >= 5


def test_replies_quote_the_original_in_several_styles(items: list[dict[str, Any]]) -> None:
    texts = [item["text"] for item in items]
    for marker in ("a écrit :", "wrote:", "-----Original Message-----", "Message d'origine"):
        assert any(marker in text for text in texts), marker
    quoted = sum("\n> " in text or "Original Message" in text for text in texts)
    assert quoted >= len(items) // 3


def test_human_replies_that_mention_leave_are_present(items: list[dict[str, Any]]) -> None:
    leave = re.compile(r"vacances|congés|holiday|out of the office", re.IGNORECASE)
    human = [i for i in items if i["label"] not in AUTOMATIC and leave.search(i["text"])]
    assert len(human) >= 3


def test_baseline_reproduces_the_first_match_order() -> None:
    # "pas possible" contains "possible", and interested is tried first: the old mistake.
    assert keyword_baseline.classify("Re: date", "Ce n'est pas possible.") == "interested"
    assert keyword_baseline.classify("Re: date", "Quel est votre tarif ?") == "negotiating"
    assert keyword_baseline.classify("Re: date", "Malheureusement non.") == "declined"
    assert keyword_baseline.classify("Re: date", "Vous jouez où ?") == "question"
    assert keyword_baseline.classify("Re: date", "Non merci.") == keyword_baseline.OTHER


def test_baseline_reads_subject_and_quotes() -> None:
    assert keyword_baseline.classify("Automatic reply: hello", "Validé.") == "out_of_office"
    assert keyword_baseline.classify("Re: Budget 2026", "Bien reçu.") == "negotiating"
    quoted = "Non merci.\n\nLe mardi, Camille a écrit :\n> Seriez-vous intéressé ?"
    assert keyword_baseline.classify("Re: date", quoted) == "interested"


def test_the_built_message_parses_back_to_the_item(items: list[dict[str, Any]]) -> None:
    replies = harness.load_replies(DATA)
    for index, reply in enumerate(replies):
        raw = harness.build_message(reply, index)
        message = BytesParser(policy=policy.default).parsebytes(raw)
        assert message["Subject"] == reply.subject
        for name, value in reply.headers.items():
            assert message[name] == value
        body = message.get_body(preferencelist=("plain",))
        assert body is not None
        assert body.get_content().replace("\r\n", "\n") == reply.text


def test_scores_match_scikit_learn() -> None:
    pytest.importorskip("sklearn")
    replies = harness.load_replies(DATA)
    run = harness.run_baseline(replies)
    truth = [reply.label for reply in replies]
    predicted = [run.predictions[reply.id].label for reply in replies]
    by_hand = harness.count_per_label_scores(truth, predicted, harness.LABELS)
    by_sklearn = harness.per_label_scores(truth, predicted, harness.LABELS)
    for label in harness.LABELS:
        for measure in ("precision", "recall", "f1", "support"):
            assert by_hand[label][measure] == pytest.approx(by_sklearn[label][measure])


def test_report_counts_every_item_once() -> None:
    replies = harness.load_replies(DATA)
    report = harness.score(replies, harness.run_baseline(replies))
    rows = report["confusion"]["rows"]
    assert sum(map(sum, rows)) == len(replies)
    diagonal = sum(rows[i][i] for i in range(len(harness.LABELS)))
    assert diagonal / len(replies) == pytest.approx(report["accuracy"])
    # The baseline never predicts an unsubscribe nor a generic automatic reply.
    assert report["per_label"]["unsubscribe"]["recall"] == 0
    assert report["per_label"]["auto_reply"]["recall"] == 0
