"""Reply classification benchmark: the inbound path and its classifier against the old keywords.

    .venv/bin/python benchmarks/classify.py                      # bundled local model
    .venv/bin/python benchmarks/classify.py --embedder hashing   # no model needed
    .venv/bin/python benchmarks/classify.py --baseline-only --json out.json

The evaluation set is ``benchmarks/data/replies.jsonl``: real-looking answers to booking and
business emails, in French and English, each labelled with one of the eight kinds the service
tells apart (six human intents, two automatic kinds). It was written apart from the classifier's
training examples; the run reports how many of its texts are also training texts, which should
be none.

Each item goes the way a received reply goes in the service: it becomes an RFC 5322 message
(``email.message.EmailMessage``, From a correspondent, To us, its subject and headers, its body
as received with quote and signature), serialised to bytes, parsed, checked for an automatic
reply, split from its quoted original, and classified on its own words. The same items go
through the keyword workflow the service replaced (``keyword_baseline``). Both are scored on
the same truth: accuracy, macro-F1 over the eight labels, per-label precision/recall/F1, the
confusion matrix (with ``other`` for what a system left unlabelled), the detection of automatic
mail, the share flagged for review, and the time per item. The markdown printed is the table of
``docs/performance.md``; ``--json`` writes every figure and every prediction.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

import keyword_baseline  # noqa: E402
from _common import row as result_row  # noqa: E402
from _common import write_result  # noqa: E402

DATA = HERE / "data" / "replies.jsonl"
LABELS = (
    "interested",
    "negotiating",
    "confirmed",
    "declined",
    "question",
    "unsubscribe",
    "auto_reply",
    "out_of_office",
)
AUTOMATIC = frozenset({"auto_reply", "out_of_office"})
OTHER = keyword_baseline.OTHER
MATRIX_LABELS = (*LABELS, OTHER)
MAX_MESSAGE_BYTES = 10 * 1024 * 1024
OUR_ADDRESS = "Booking <booking@mareehaute-prod.fr>"
# Correspondents are spread over neutral addresses: no "noreply" sender gives an automatic
# reply away, the detector has to read headers, subject and body.
CORRESPONDENTS = (
    "Programmation <programmation@lechabada.example>",
    "Lucie Martin <lucie.martin@lefil.example>",
    "Tom Hargreaves <tom@thefleece.example>",
    "Festival <contact@electricfields.example>",
    "Nathalie Garnier <n.garnier@lescure.example>",
    "Rachel Green <rachel@backlineuk.example>",
    "Bar Le Zinc <lezinc.concerts@gmail.example>",
)


@dataclass(frozen=True)
class Reply:
    """One labelled item of the evaluation set."""

    id: str
    lang: str
    domain: str
    subject: str
    headers: dict[str, str]
    text: str
    label: str


@dataclass
class Prediction:
    """What one system said about one item, and how long it took.

    ``seconds`` is the classification alone; ``path_seconds`` adds parsing, auto-reply
    detection and the quote split (the baseline has no such steps: both are the same).
    """

    label: str
    seconds: float
    path_seconds: float
    needs_review: bool = False
    confidence: float | None = None


@dataclass
class SystemRun:
    name: str
    predictions: dict[str, Prediction] = field(default_factory=dict)


def load_replies(path: Path = DATA) -> list[Reply]:
    with path.open(encoding="utf-8") as handle:
        return [Reply(**json.loads(line)) for line in handle if line.strip()]


def build_message(reply: Reply, index: int) -> bytes:
    """The item as the service would receive it: a serialised RFC 5322 message."""
    message = EmailMessage()
    message["From"] = CORRESPONDENTS[index % len(CORRESPONDENTS)]
    message["To"] = OUR_ADDRESS
    message["Subject"] = reply.subject
    message["Date"] = format_datetime(datetime(2025, 10, 15, 9, 0, tzinfo=UTC))
    message["Message-ID"] = make_msgid(domain="correspondent.example")
    message["In-Reply-To"] = f"<outreach-{index}@mareehaute-prod.fr>"
    for name, value in reply.headers.items():
        message[name] = value
    message.set_content(reply.text)
    return message.as_bytes()


# ------------------------------------------------------------------ the two systems


def run_baseline(replies: Sequence[Reply]) -> SystemRun:
    run = SystemRun("keyword baseline")
    for reply in replies:
        started = time.perf_counter()
        label = keyword_baseline.classify(reply.subject, reply.text)
        elapsed = time.perf_counter() - started
        # The workflow left what it could not label to a human: that is its review queue.
        run.predictions[reply.id] = Prediction(
            label, elapsed, elapsed, needs_review=label == OTHER
        )
    return run


@dataclass
class Pipeline:
    """The inbound modules and a trained classifier, as the service wires them."""

    parse_message: Any
    detect: Any
    split_reply: Any
    classifier: Any
    training_texts: frozenset[str]


def import_pipeline() -> tuple[Any, ...]:
    """The inbound and classify modules; ImportError while they are not there."""
    from email_sender.classify import ReplyClassifier, shipped_examples
    from email_sender.inbound.autoreply import detect
    from email_sender.inbound.parse import parse_message
    from email_sender.inbound.quotes import split_reply

    return parse_message, detect, split_reply, ReplyClassifier, shipped_examples


async def build_pipeline(embedder_name: str, threshold: float | None) -> Pipeline:
    parse_message, detect, split_reply, reply_classifier, shipped_examples = import_pipeline()
    embedder = await build_embedder(embedder_name)
    options = {} if threshold is None else {"threshold": threshold}
    classifier = reply_classifier(embedder, **options)
    await classifier.train()
    examples = shipped_examples() if callable(shipped_examples) else shipped_examples
    return Pipeline(parse_message, detect, split_reply, classifier, training_texts(examples))


async def build_embedder(name: str) -> Any:
    from email_sender.vectors.embedders import HashingEmbedder, LocalEmbedder

    if name == "hashing":
        return HashingEmbedder()
    embedder = LocalEmbedder()
    await embedder.load()
    return embedder


def training_texts(examples: Any) -> frozenset[str]:
    """Normalised texts of the training examples, to count any that leaked into this set."""
    return frozenset(_normalise(str(getattr(example, "text", example))) for example in examples)


def _normalise(text: str) -> str:
    return " ".join(text.lower().split())


async def run_full(replies: Sequence[Reply], pipeline: Pipeline) -> tuple[SystemRun, list[str]]:
    """Every item through parse, auto-reply detection, quote split and the classifier."""
    run = SystemRun("classifier")
    leaked: list[str] = []
    for index, reply in enumerate(replies):
        raw = build_message(reply, index)
        started = time.perf_counter()
        parsed = pipeline.parse_message(raw, max_bytes=MAX_MESSAGE_BYTES)
        automatic = pipeline.detect(parsed)
        split = pipeline.split_reply(parsed.text)
        kind = automatic.kind if automatic is not None else "reply"
        classify_started = time.perf_counter()
        result = await pipeline.classifier.classify(split.own_words, kind=kind)
        finished = time.perf_counter()
        run.predictions[reply.id] = Prediction(
            predicted_label(result, kind),
            finished - classify_started,
            finished - started,
            needs_review=bool(getattr(result, "needs_review", False)),
            confidence=getattr(result, "confidence", None),
        )
        if _normalise(split.own_words) in pipeline.training_texts:
            leaked.append(reply.id)
    return run, leaked


def predicted_label(result: Any, kind: str) -> str:
    """The result's label among the eight; ``other`` for anything else (bounce, no intent)."""
    label = getattr(result, "intent", None) or getattr(result, "label", None)
    if label is None and kind in AUTOMATIC:
        label = kind
    label = str(label) if label is not None else OTHER
    return label if label in LABELS else OTHER


# ------------------------------------------------------------------ scoring


def per_label_scores(truth: Sequence[str], predicted: Sequence[str],
                     labels: Sequence[str]) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support per label; 0 where undefined (zero_division=0).

    scikit-learn computes them when it is installed; the fallback gives the same figures.
    """
    try:
        from sklearn.metrics import precision_recall_fscore_support
    except ImportError:
        return count_per_label_scores(truth, predicted, labels)
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=list(labels), zero_division=0
    )
    return {
        label: {"precision": float(precision[index]), "recall": float(recall[index]),
                "f1": float(f1[index]), "support": int(support[index])}
        for index, label in enumerate(labels)
    }


def count_per_label_scores(truth: Sequence[str], predicted: Sequence[str],
                           labels: Sequence[str]) -> dict[str, dict[str, float]]:
    """The same figures as :func:`per_label_scores`, counted by hand."""
    scores: dict[str, dict[str, float]] = {}
    for label in labels:
        pairs = zip(truth, predicted, strict=True)
        true_positive = sum(t == label and p == label for t, p in pairs)
        predicted_count = sum(p == label for p in predicted)
        support = sum(t == label for t in truth)
        precision = true_positive / predicted_count if predicted_count else 0.0
        recall = true_positive / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        scores[label] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    return scores


def confusion(truth: Sequence[str], predicted: Sequence[str],
              labels: Sequence[str] = MATRIX_LABELS) -> list[list[int]]:
    """Rows are the truth, columns the prediction, both in ``labels`` order."""
    position = {label: index for index, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for true_label, predicted_label_ in zip(truth, predicted, strict=True):
        matrix[position[true_label]][position[predicted_label_]] += 1
    return matrix


def automatic_detection(truth: Sequence[str], predicted: Sequence[str]) -> dict[str, Any]:
    """Precision and recall of automatic mail: both kinds as one class, then each kind."""
    as_one = per_label_scores(
        ["automatic" if t in AUTOMATIC else "human" for t in truth],
        ["automatic" if p in AUTOMATIC else "human" for p in predicted],
        ["automatic"],
    )["automatic"]
    each = per_label_scores(truth, predicted, sorted(AUTOMATIC))
    return {"automatic": as_one, **each}


def score(replies: Sequence[Reply], run: SystemRun) -> dict[str, Any]:
    truth = [reply.label for reply in replies]
    predictions = [run.predictions[reply.id] for reply in replies]
    predicted = [prediction.label for prediction in predictions]
    per_label = per_label_scores(truth, predicted, LABELS)
    macro_f1 = statistics.fmean(per_label[label]["f1"] for label in LABELS)
    return {
        "system": run.name,
        "items": len(replies),
        "accuracy": sum(t == p for t, p in zip(truth, predicted, strict=True)) / len(replies),
        "macro_f1": macro_f1,
        "per_label": per_label,
        "confusion": {"labels": list(MATRIX_LABELS), "rows": confusion(truth, predicted)},
        "automatic_detection": automatic_detection(truth, predicted),
        "needs_review_share": sum(p.needs_review for p in predictions) / len(replies),
        "mean_ms": statistics.fmean(p.seconds for p in predictions) * 1000,
        "mean_path_ms": statistics.fmean(p.path_seconds for p in predictions) * 1000,
    }


# ------------------------------------------------------------------ report


def markdown(reports: Sequence[dict[str, Any]], ratio: float | None) -> str:
    names = [report["system"] for report in reports]
    lines = [
        f"| measure | {' | '.join(names)} |",
        f"|---|{'---:|' * len(reports)}",
    ]

    def row(name: str, values: Sequence[str]) -> None:
        lines.append(f"| {name} | {' | '.join(values)} |")

    row("items", [str(r["items"]) for r in reports])
    row("accuracy", [f"{r['accuracy']:.1%}" for r in reports])
    row("macro-F1 (8 labels)", [f"{r['macro_f1']:.3f}" for r in reports])
    for kind in ("automatic", "auto_reply", "out_of_office"):
        row(f"{kind} precision / recall", [
            f"{r['automatic_detection'][kind]['precision']:.2f} / "
            f"{r['automatic_detection'][kind]['recall']:.2f}" for r in reports
        ])
    row("flagged for review", [f"{r['needs_review_share']:.1%}" for r in reports])
    row("mean classification time per item", [f"{r['mean_ms']:.2f} ms" for r in reports])
    row("mean time per item, whole inbound path",
        [f"{r['mean_path_ms']:.2f} ms" for r in reports])
    if ratio is not None:
        lines.append(f"\nmacro-F1 classifier / baseline: **{ratio:.2f}x**")
    lines += ["", f"| label | {' | '.join(f'{n} P / R / F1' for n in names)} | support |",
              f"|---|{'---:|' * len(reports)}---:|"]
    for label in LABELS:
        cells = [
            "{precision:.2f} / {recall:.2f} / {f1:.2f}".format(**r["per_label"][label])
            for r in reports
        ]
        support = int(reports[0]["per_label"][label]["support"])
        lines.append(f"| {label} | {' | '.join(cells)} | {support} |")
    for report in reports:
        lines += ["", f"Confusion, {report['system']} (rows: truth, columns: predicted)", ""]
        lines.append(f"| truth \\ predicted | {' | '.join(MATRIX_LABELS)} |")
        lines.append(f"|---|{'---:|' * len(MATRIX_LABELS)}")
        for label, counts in zip(MATRIX_LABELS, report["confusion"]["rows"], strict=True):
            lines.append(f"| {label} | {' | '.join(str(count) for count in counts)} |")
    return "\n".join(lines)


def item_rows(replies: Sequence[Reply], runs: Sequence[SystemRun]) -> list[dict[str, Any]]:
    rows = []
    for reply in replies:
        row: dict[str, Any] = {"id": reply.id, "label": reply.label}
        for run in runs:
            prediction = run.predictions[reply.id]
            row[run.name] = {
                "label": prediction.label,
                "needs_review": prediction.needs_review,
                "confidence": prediction.confidence,
            }
        rows.append(row)
    return rows


def result_rows(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    baseline, ours = reports
    return [
        result_row("macro-F1, 8 labels", ours["macro_f1"], "", peer="keyword baseline",
                   peer_value=baseline["macro_f1"], target=">= 0.85",
                   met=ours["macro_f1"] >= 0.85),
        result_row("accuracy", ours["accuracy"] * 100, "%", peer="keyword baseline",
                   peer_value=baseline["accuracy"] * 100),
        result_row("mean time per reply, whole inbound path", ours["mean_path_ms"], "ms"),
    ]


async def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write every figure and prediction here")
    parser.add_argument("--baseline-only", action="store_true",
                        help="score the keyword workflow alone")
    parser.add_argument("--embedder", choices=("local", "hashing"), default="local")
    parser.add_argument("--threshold", type=float, default=None,
                        help="classifier confidence threshold (default: the classifier's own)")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--quick", action="store_true",
                        help="accepted for make bench; the evaluation set is small")
    args = parser.parse_args(argv)

    replies = load_replies(args.data)
    runs = [run_baseline(replies)]
    leaked: list[str] | None = None
    if not args.baseline_only:
        try:
            pipeline = await build_pipeline(args.embedder, args.threshold)
        except ImportError as exc:
            print(f"the inbound path cannot be imported ({exc}); use --baseline-only",
                  file=sys.stderr)
            return 2
        full_run, leaked = await run_full(replies, pipeline)
        runs.append(full_run)

    reports = [score(replies, run) for run in runs]
    ratio = None
    if len(reports) == 2 and reports[0]["macro_f1"]:
        ratio = reports[1]["macro_f1"] / reports[0]["macro_f1"]
    embedder_note = "" if args.baseline_only else f", embedder {args.embedder}"
    print(f"{len(replies)} replies from {args.data.name}{embedder_note}")
    if leaked is not None:
        print(f"evaluation texts also in the training examples: {len(leaked)} "
              f"{' '.join(leaked)}")
    print(markdown(reports, ratio))
    if len(reports) == 2:
        write_result("classify", {"embedder": args.embedder, "macro_f1_ratio": ratio,
                                  "systems": reports}, result_rows(reports),
                     details=markdown(reports, ratio))
    if args.json:
        args.json.write_text(json.dumps({
            "data": str(args.data),
            "embedder": None if args.baseline_only else args.embedder,
            "training_overlap": leaked,
            "macro_f1_ratio": ratio,
            "systems": reports,
            "items": item_rows(replies, runs),
        }, indent=2, ensure_ascii=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
