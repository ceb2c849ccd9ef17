"""The vLLM tier runs in .venv-vllm (scripts/test-vllm.sh): vLLM's CPU build is real here."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the shared conformance check and servers


@pytest.fixture(scope="session")
def cpu_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """vLLM-on-CPU settings measured on a 2-core machine (see the README, section Engines)."""
    cache = tmp_path_factory.mktemp("vllm-cache")
    env = {
        "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",  # on 2 cores, reserving one costs 1.5x
        "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB
        "VLLM_CACHE_ROOT": str(cache / "vllm"),
        "TORCHINDUCTOR_CACHE_DIR": str(cache / "inductor"),
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(cache / "hf"),
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        yield env


@pytest.fixture(scope="session")
def hf_model(tmp_path_factory: pytest.TempPathFactory, cpu_env: dict[str, str]) -> Path:
    """The packaged GGUF as a Hugging Face folder, with a chat template that, like the paper's
    teacher (Mistral-7B-Instruct-v0.2), has no system role."""
    folder = tmp_path_factory.mktemp("smollm2-hf")
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gguf_to_hf.py"), str(folder), "--no-system-role"],
        check=True,
        timeout=300,
    )
    return folder
