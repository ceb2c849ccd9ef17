"""Sentence embeddings are optional (the quality extra); the real model is tested in
tests_vllm/test_embeddings.py, where CPU torch is installed."""

from __future__ import annotations

import subprocess
import sys

import pytest
from emopillars.dataset.embeddings import sentence_embedder


def test_no_embedder_without_sentence_transformers(monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules is Python's own "not importable" marker: find_spec returns
    # None for it and an import raises ImportError, whether or not the package is installed.
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    assert sentence_embedder() is None
    assert sentence_embedder("any/model") is None


def test_importing_the_module_loads_no_heavy_library() -> None:
    code = (
        "import sys, emopillars.dataset.embeddings; "
        "print(sorted({'numpy', 'torch', 'sentence_transformers'} & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
