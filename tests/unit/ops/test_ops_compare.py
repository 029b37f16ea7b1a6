"""Comparing two embedders over the same texts, and the embedder specs of the CLI."""

from __future__ import annotations

import pytest

from email_sender.errors import ValidationError
from email_sender.ops.compare import compare, parse_embedder_spec
from email_sender.settings import load_settings
from email_sender.vectors.embedders import HashingEmbedder, LocalEmbedder, OpenAIEmbedder

TEXTS = [
    f"{subject}\n\nHello, {body} Regards, the venue."
    for subject, body in [
        ("Invoice 2024-17", "please find the invoice for the March show attached."),
        ("Invoice 2024-18", "the invoice for the April show is attached."),
        ("Tour dates", "we can offer three autumn dates in Lyon and Lille."),
        ("Autumn tour", "are the Lyon dates in October still open?"),
        ("Rider", "the technical rider asks for two monitors and a DI box."),
        ("Tech rider", "please send the stage plot and the rider."),
        ("Contract", "the signed contract for the festival is attached."),
        ("Festival contract", "we need the contract back signed by Friday."),
    ]
]


async def test_same_embedder_agrees_fully() -> None:
    report = await compare(TEXTS, HashingEmbedder(128), HashingEmbedder(128), top_k=3)
    assert report.cosine_min == pytest.approx(1.0, abs=1e-6)
    assert report.cosine_p5 == pytest.approx(1.0, abs=1e-6)
    assert report.overlap_min == report.overlap_mean == 1.0
    assert report.as_dict()["a"]["model"] == "hashing-128"


async def test_different_dimensions_compare_neighbours_only() -> None:
    report = await compare(TEXTS, HashingEmbedder(384), HashingEmbedder(64), top_k=2)
    assert report.cosine_mean is None and report.as_dict()["cosine"] is None
    assert report.overlap_mean is not None and 0.0 <= report.overlap_mean <= 1.0
    assert report.top_k == 2 and report.texts == len(TEXTS)


def test_specs() -> None:
    settings = load_settings(None)
    assert parse_embedder_spec("hashing", settings).dimension == 384
    assert parse_embedder_spec("hashing:256", settings).dimension == 256
    assert isinstance(parse_embedder_spec("local", settings), LocalEmbedder)
    remote = parse_embedder_spec("openai:http://127.0.0.1:11434/v1:nomic-embed-text:768", settings)
    assert isinstance(remote, OpenAIEmbedder)
    assert (remote.model, remote.dimension) == ("nomic-embed-text", 768)
    assert remote.endpoint == "http://127.0.0.1:11434/v1/embeddings"
    for bad in ("word2vec", "hashing:x", "openai:nomodel"):
        with pytest.raises(ValidationError, match="embedder"):
            parse_embedder_spec(bad, settings)
