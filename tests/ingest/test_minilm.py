"""The optional MiniLM embedder: runs only where its extra and weights are installed (never downloaded)."""

from __future__ import annotations

import numpy as np
import pytest

from conveyor.ingest.errors import EmbeddingError


def _embedder():  # type: ignore[no-untyped-def]
    pytest.importorskip("tokenizers")
    pytest.importorskip("safetensors")
    from conveyor.ingest.minilm import MiniLMEmbedder, model_dir

    try:
        model_dir()
    except EmbeddingError as exc:
        pytest.skip(str(exc))
    return MiniLMEmbedder.shared()


def test_matches_the_reference_model() -> None:
    embedder = _embedder()
    vector = embedder.embed(["This is an example sentence"])[0]
    # The first values sentence-transformers prints for this sentence in the model's documentation.
    assert np.allclose(vector[:5], [0.0676569, 0.0634960, 0.0487131, 0.0793050, 0.0374481], atol=2e-4)
    assert vector.shape == (384,) and abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5


def test_semantic_similarity_and_padding() -> None:
    embedder = _embedder()
    texts = ["A man is eating food.", "Someone is having a meal.", "The stock market fell sharply today."]
    together = embedder.embed(texts)
    assert together[0] @ together[1] > 0.5 > together[0] @ together[2]
    alone = embedder.embed([texts[0]])
    assert np.allclose(alone[0], together[0], atol=1e-5), "padding in a batch does not change a text's vector"


def test_missing_weights_say_how_to_install() -> None:
    from conveyor.ingest.minilm import model_dir

    with pytest.raises(EmbeddingError, match=r"lacks config\.json"):
        model_dir({"CONVEYOR_MINILM_DIR": "/nonexistent"})
