"""Engine registry: describe the configured engine cheaply, load it only when work remains."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import RunConfig
from pipeline.engines.base import Engine, EngineInfo, EngineSpec, Message, Request, Result, Sampling
from pipeline.hashing import file_hash

__all__ = ["Engine", "EngineInfo", "EngineSpec", "Message", "Request", "Result", "Sampling"]

PAPER_REPETITION_PENALTY = 1.03
# Measured on SmolLM2-135M: at 1.03 it often repeats a phrase until max_tokens; 1.15 made
# its JSON answers valid. Bigger teachers keep the paper's value.
SMALL_MODEL_REPETITION_PENALTY = 1.15


def engine_spec(config: RunConfig) -> EngineSpec:
    if config.engine == "fake":
        return _fake_spec(config)
    return _llamacpp_spec(config)


def _fake_spec(config: RunConfig) -> EngineSpec:
    from pipeline.engines.fake import FakeEngine

    options = {"fault_rate": config.fake_fault_rate}
    return EngineSpec(
        info=EngineInfo(name="fake", model="fake", options=options),
        repetition_penalty=config.repetition_penalty or PAPER_REPETITION_PENALTY,
        batch_size=None,
        load=lambda: FakeEngine(config.fake_fault_rate, config.fake_latency_s),
    )


def _llamacpp_spec(config: RunConfig) -> EngineSpec:
    from pipeline.engines.llamacpp import LlamaCppEngine, packaged_model_path

    packaged = config.model is None
    model_path = packaged_model_path() if packaged else Path(config.model or "")
    if not model_path.is_file():
        raise FileNotFoundError(f"model file {model_path} does not exist")
    default_penalty = SMALL_MODEL_REPETITION_PENALTY if packaged else PAPER_REPETITION_PENALTY
    info = EngineInfo(
        name="llamacpp",
        model=f"{model_path.name}@sha256:{file_hash(model_path)[:16]}",
        options={"context_window": config.context_window},
    )
    return EngineSpec(
        info=info,
        repetition_penalty=config.repetition_penalty or default_penalty,
        batch_size=4,
        load=lambda: LlamaCppEngine(model_path, config.context_window, config.threads, config.seed),
    )
