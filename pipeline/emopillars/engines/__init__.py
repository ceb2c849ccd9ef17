"""Engine registry: describe the configured engine cheaply, load it only when work remains."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from emopillars.config import RunConfig
from emopillars.engines.base import (
    Engine,
    EngineInfo,
    EngineSpec,
    Message,
    Request,
    Result,
    Sampling,
)
from emopillars.engines.identity import model_file_hash

__all__ = ["Engine", "EngineInfo", "EngineSpec", "Message", "Request", "Result", "Sampling"]

PAPER_REPETITION_PENALTY = 1.03
# Measured on SmolLM2-135M: at 1.03 it often repeats a phrase until max_tokens; 1.15 made
# its JSON answers valid. Bigger teachers keep the paper's value.
SMALL_MODEL_REPETITION_PENALTY = 1.15


def engine_spec(config: RunConfig) -> EngineSpec:
    """Describe the configured engine; fails at once on a missing extra, file or key."""
    return _SPECS[config.engine](config)


def _fake_spec(config: RunConfig) -> EngineSpec:
    from emopillars.engines.fake import FakeEngine

    options = {"fault_rate": config.fake_fault_rate}
    return EngineSpec(
        info=EngineInfo(name="fake", model="fake", options=options),
        repetition_penalty=config.repetition_penalty or PAPER_REPETITION_PENALTY,
        batch_size=None,
        load=lambda: FakeEngine(config.fake_fault_rate, config.fake_latency_s),
        max_in_flight=1024,
    )


def _llamacpp_spec(config: RunConfig) -> EngineSpec:
    from emopillars.engines.llamacpp import LlamaCppEngine, packaged_model_path

    packaged = config.model is None
    model_path = packaged_model_path() if packaged else Path(config.model or "")
    if not model_path.is_file():
        raise FileNotFoundError(f"model file {model_path} does not exist")
    default_penalty = SMALL_MODEL_REPETITION_PENALTY if packaged else PAPER_REPETITION_PENALTY
    info = EngineInfo(
        name="llamacpp",
        model=model_path.name,
        revision=f"sha256:{model_file_hash(model_path)[:16]}",
        options={"context_window": config.context_window},
    )
    return EngineSpec(
        info=info,
        repetition_penalty=config.repetition_penalty or default_penalty,
        batch_size=4,
        load=lambda: LlamaCppEngine(model_path, config.context_window, config.threads, config.seed),
        # It answers one request at a time: a batch of 4 bounds what a crash can lose.
        max_in_flight=4,
    )


def _vllm_spec(config: RunConfig) -> EngineSpec:
    from emopillars.engines.vllm import VLLMEngine, check_installed

    check_installed()
    options = config.vllm
    info = EngineInfo(
        name="vllm",
        model=config.model or "",
        revision=options.revision,
        # What changes the answers; parallelism and memory settings do not.
        options={
            "dtype": options.dtype,
            "max_model_len": options.max_model_len,
        },
    )
    return EngineSpec(
        info=info,
        repetition_penalty=config.repetition_penalty or PAPER_REPETITION_PENALTY,
        batch_size=None,  # all that is in flight, in one call (when it cannot stream)
        load=lambda: VLLMEngine(config),
        # 4 x vLLM's default 256 concurrent sequences: a queue deep enough that a finished
        # sequence's slot is taken at once.
        max_in_flight=1024,
    )


def _openai_spec(config: RunConfig) -> EngineSpec:
    from emopillars.engines.openai_server import OpenAIServerEngine, api_key

    api_key(config.server)  # a missing key fails now, not after the first shard
    info = EngineInfo(
        name="openai",
        model=config.model or "",
        options={"structured_outputs": config.server.structured_outputs},
    )
    return EngineSpec(
        info=info,
        repetition_penalty=config.repetition_penalty or PAPER_REPETITION_PENALTY,
        # The engine streams (submit/completed): `concurrency` requests are at the server,
        # and the scheduler keeps a few rounds more queued in the client, so that a finished
        # request's slot is refilled at once. batch_size only applies to generate() callers.
        batch_size=8 * config.server.concurrency,
        load=lambda: OpenAIServerEngine(config.model or "", config.server),
        max_in_flight=4 * config.server.concurrency,
    )


_SPECS: dict[str, Callable[[RunConfig], EngineSpec]] = {
    "fake": _fake_spec,
    "llamacpp": _llamacpp_spec,
    "vllm": _vllm_spec,
    "openai": _openai_spec,
}
