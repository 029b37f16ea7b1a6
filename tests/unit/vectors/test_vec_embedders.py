"""Embedders without a model: hashing, the OpenAI-compatible client, and the provider choice."""

from __future__ import annotations

import json
import logging

import httpx
import numpy as np
import pytest

from email_sender.errors import ConfigError, DimensionMismatch, EmbedderUnavailable
from email_sender.settings import EmbedderSettings
from email_sender.vectors.embedders import (
    Embedder,
    HashingEmbedder,
    LocalEmbedder,
    OpenAIEmbedder,
    build_embedder,
    embeddings_endpoint,
)


async def test_hashing_is_deterministic_across_instances() -> None:
    texts = ["Your invoice for March", "Meeting moved to Friday"]

    first = await HashingEmbedder().embed(texts)
    second = await HashingEmbedder().embed(texts)

    assert first.dtype == np.float32
    assert first.shape == (2, 384)
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first[0], first[1])


@pytest.mark.parametrize("dimension", [8, 384, 1536])
async def test_hashing_vectors_are_unit_length_at_any_dimension(dimension: int) -> None:
    vectors = await HashingEmbedder(dimension).embed(["a b c", "", "!!!", "Ünïcode wörds"])

    assert vectors.shape == (4, dimension)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)


async def test_hashing_puts_shared_words_closer_than_unrelated_ones() -> None:
    embedder = HashingEmbedder()
    query = await embedder.embed_one("quarterly invoice payment overdue")
    related = await embedder.embed_one("your invoice payment is overdue")
    unrelated = await embedder.embed_one("team offsite hiking trip photos")

    assert float(query @ related) > float(query @ unrelated)


async def test_hashing_bigrams_distinguish_word_order() -> None:
    embedder = HashingEmbedder()

    assert not np.allclose(await embedder.embed_one("dog bites man"),
                           await embedder.embed_one("man bites dog"))


async def test_embed_of_nothing_is_an_empty_matrix() -> None:
    assert (await HashingEmbedder(16).embed([])).shape == (0, 16)


def _embeddings_answer(request: httpx.Request, dimension: int = 4) -> httpx.Response:
    texts = json.loads(request.content)["input"]
    # Out of order on purpose: the client must sort by "index".
    data = [
        {"index": i, "embedding": [float(i + 1)] + [0.0] * (dimension - 1)}
        for i in reversed(range(len(texts)))
    ]
    return httpx.Response(200, json={"data": data, "model": "m"})


def _openai(handler, **kwargs) -> OpenAIEmbedder:
    options = {"dimension": 4, "backoff_base": 0.001, "max_attempts": 3, **kwargs}
    return OpenAIEmbedder(
        "m", url="http://embedder.test/v1", transport=httpx.MockTransport(handler), **options
    )


async def test_openai_retries_a_429_then_answers_in_input_order() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            return httpx.Response(429, json={"error": {"message": "rate limited"}},
                                  headers={"retry-after": "0"})
        return _embeddings_answer(request)

    embedder = _openai(handler, api_key="sk-test")
    vectors = await embedder.embed(["one", "two", "three"])
    await embedder.close()

    assert len(calls) == 2
    assert str(calls[0].url) == "http://embedder.test/v1/embeddings"
    assert calls[0].headers["authorization"] == "Bearer sk-test"
    assert json.loads(calls[0].content) == {"model": "m", "input": ["one", "two", "three"]}
    assert vectors.shape == (3, 4)
    np.testing.assert_allclose(vectors[:, 0], [1.0, 1.0, 1.0])


async def test_openai_gives_up_after_bounded_5xx_with_embedder_unavailable() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(503, text="overloaded")

    embedder = _openai(handler)
    with pytest.raises(EmbedderUnavailable, match=r"failed 3 times; last: HTTP 503: overloaded"):
        await embedder.embed(["x"])
    await embedder.close()

    assert calls == 3


async def test_openai_does_not_retry_a_refused_key() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(401, json={"error": "bad key"})

    embedder = _openai(handler)
    with pytest.raises(EmbedderUnavailable, match=r"HTTP 401 \(check embedder.api_key\)"):
        await embedder.embed_one("x")
    await embedder.close()

    assert calls == 1


async def test_openai_connection_refused_names_the_url(unused_tcp_port: int) -> None:
    embedder = OpenAIEmbedder("m", url=f"http://127.0.0.1:{unused_tcp_port}", dimension=4)

    with pytest.raises(EmbedderUnavailable) as caught:
        await embedder.embed_one("x")
    await embedder.close()

    assert f"http://127.0.0.1:{unused_tcp_port}/v1/embeddings" in str(caught.value)
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


async def test_openai_splits_batches_and_checks_the_dimension() -> None:
    sizes: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sizes.append(len(json.loads(request.content)["input"]))
        return _embeddings_answer(request, dimension=4)

    embedder = _openai(handler, batch_size=2)
    assert (await embedder.embed(["a", "b", "c", "d", "e"])).shape == (5, 4)
    assert sizes == [2, 2, 1]
    await embedder.close()

    wrong = _openai(handler, dimension=8)
    with pytest.raises(DimensionMismatch, match="got 4, expected 8"):
        await wrong.embed_one("a")
    await wrong.close()


def test_openai_dimension_defaults_by_model_and_is_required_otherwise() -> None:
    assert OpenAIEmbedder("text-embedding-3-small").dimension == 1536
    with pytest.raises(ConfigError, match=r"embedder\.dimension"):
        OpenAIEmbedder("nomic-embed-text")


@pytest.mark.parametrize(
    "url",
    ["http://h:11434", "http://h:11434/", "http://h:11434/v1", "http://h:11434/v1/embeddings"],
)
def test_endpoint_accepts_any_form_of_base_url(url: str) -> None:
    assert embeddings_endpoint(url) == "http://h:11434/v1/embeddings"


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (EmbedderSettings(provider="hashing", dimension=64), HashingEmbedder),
        (EmbedderSettings(provider="auto", model="no-such-model"), HashingEmbedder),
        (EmbedderSettings(provider="auto", url="http://h:8080", dimension=4), OpenAIEmbedder),
        (EmbedderSettings(provider="local"), LocalEmbedder),
    ],
)
def test_build_embedder_logs_its_choice(
    settings: EmbedderSettings, expected: type, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="email_sender.vectors.embedders")

    embedder = build_embedder(settings)

    assert isinstance(embedder, expected)
    assert isinstance(embedder, Embedder)
    [record] = [r for r in caplog.records if r.message == "embedder_selected"]
    assert record.provider == embedder.name  # type: ignore[attr-defined]


def test_local_provider_refuses_a_dimension_the_model_cannot_give() -> None:
    with pytest.raises(ConfigError, match="384"):
        build_embedder(EmbedderSettings(provider="local", dimension=768))
