"""The real engine: completion tokens/s of the pipeline on vLLM against one `LLM.chat` call
that holds the same requests at once (the most a continuous-batching engine can do with them).

    python benchmarks/vllm_pipeline.py [--model HF_DIR] [--stories 4] [--actors 2]
                                       [--shard-size 1] [--json]

Runs in the vLLM tier's environment (`.venv-vllm`, see scripts/test-vllm.sh), on vLLM's CPU
build or a GPU. Without `--model` the packaged SmolLM2 GGUF is turned into a Hugging Face
folder first (scripts/gguf_to_hf.py, about 30 s). One vLLM engine is loaded and serves, in
turn, on the sample corpus:

- the pipeline with today's schedule (requests streamed in through `LLM.enqueue_chat` as
  their inputs exist, many story shards in flight);
- the pipeline with the schedule before it (one `LLM.chat` call per stage, story shard and
  attempt: a barrier after each), as `--shards-in-flight 1` with merged calls gives;
- one `LLM.chat` call holding every request the streamed run sent.

Each figure is completion tokens over wall seconds; the ratio is the pipeline's over the one
call's. The prefix cache is emptied before each run. Small shards (`--shard-size 1`) stand in
for a real corpus's many shards: with 4 stories in one shard there is nothing to overlap.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from emopillars.config import RunConfig
from emopillars.engines import Request, Result, engine_spec
from emopillars.engines.vllm import VLLMEngine
from emopillars.run.runner import Runner

ROOT = Path(__file__).resolve().parent.parent
# vLLM on a 2-core CPU: see ../shared/REFERENCE.md and tests_vllm/conftest.py.
CPU_ENVIRONMENT = {
    "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
    "VLLM_CPU_KVCACHE_SPACE": "4",  # GiB: room for every request of the one call
    "HF_HUB_OFFLINE": "1",
}


class Counting:
    """The engine, counting what it is sent and the completion tokens it answers with;
    `stream` False hides submit/completed, so the runner makes merged generate() calls."""

    def __init__(self, engine: VLLMEngine, stream: bool) -> None:
        self.engine = engine
        self.sent: list[Request] = []
        self.completion_tokens = 0
        if stream:
            self.submit = self._submit
            self.completed = self._completed

    def generate(self, requests: Sequence[Request]) -> list[Result]:
        self.sent.extend(requests)
        results = self.engine.generate(requests)
        self.completion_tokens += sum(result.completion_tokens for result in results)
        return results

    def _submit(self, requests: Sequence[Request]) -> None:
        self.sent.extend(requests)
        self.engine.submit(requests)

    def _completed(self) -> list[tuple[str, Result]]:
        done = self.engine.completed()
        self.completion_tokens += sum(result.completion_tokens for _, result in done)
        return done

    def close(self) -> None:
        pass  # the engine serves the next run


def config_for(args: argparse.Namespace, output: Path, shards_in_flight: int) -> RunConfig:
    return RunConfig.model_validate(
        {
            "engine": "vllm",
            "model": str(args.model),
            "output": str(output),
            "max_stories": args.stories,
            "max_actors": args.actors,
            "shard_size": args.shard_size,
            "emotions_per_actor": args.emotions,
            "neutral_per_actor": 1,
            "repetition_penalty": 1.15,
            "vllm": {"dtype": args.dtype, "enforce_eager": True, "max_model_len": 4096},
            "execution": {"shards_in_flight": shards_in_flight},
        }
    )


def pipeline(
    args: argparse.Namespace, engine: VLLMEngine, folder: Path, name: str, stream: bool
) -> tuple[dict[str, Any], list[Request]]:
    config = config_for(args, folder / name, shards_in_flight=32 if stream else 1)
    counting = Counting(engine, stream)
    engine._llm.reset_prefix_cache()
    began = time.perf_counter()
    Runner(config, replace(engine_spec(config), load=lambda: counting)).run()
    seconds = time.perf_counter() - began
    return figures(counting.completion_tokens, seconds, len(counting.sent)), counting.sent


def one_call(engine: VLLMEngine, requests: list[Request]) -> dict[str, Any]:
    conversations, params = engine._conversations(requests), engine._params(requests)
    for sampling in params:
        # vLLM's CPU build fails a seeded sampled request whose prefill is split across steps
        # ("CPU Generator does not use offset"), which one call this large makes certain: the
        # retries sample here without their seed (the GPU build has no such limit).
        if sampling.temperature > 0:
            sampling.seed = None
    engine._llm.reset_prefix_cache()
    began = time.perf_counter()
    outputs = engine._llm.chat(conversations, params, use_tqdm=False)
    seconds = time.perf_counter() - began
    tokens = sum(len(output.outputs[0].token_ids or ()) for output in outputs)
    return figures(tokens, seconds, len(requests))


def figures(tokens: int, seconds: float, requests: int) -> dict[str, Any]:
    return {
        "requests": requests,
        "completion_tokens": tokens,
        "seconds": round(seconds, 2),
        "tokens_per_second": round(tokens / seconds, 1),
    }


def packaged_model(folder: Path) -> Path:
    model = folder / "smollm2-hf"
    script = ROOT / "scripts" / "gguf_to_hf.py"
    subprocess.run(
        [sys.executable, str(script), str(model)], check=True, timeout=600, stdout=sys.stderr
    )
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a Hugging Face model folder")
    parser.add_argument("--stories", type=int, default=4)
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--emotions", type=int, default=4, help="emotions per actor")
    parser.add_argument("--shard-size", type=int, default=1)
    parser.add_argument("--dtype", default="float32", help="float32 on CPUs without AVX-512 BF16")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    for name, value in CPU_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        os.environ.setdefault("VLLM_CACHE_ROOT", str(folder / "vllm-cache"))
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(folder / "inductor-cache"))
        if args.model is None:
            args.model = packaged_model(folder)
        engine = VLLMEngine(config_for(args, folder / "unused", shards_in_flight=32))
        try:
            streamed, sent = pipeline(args, engine, folder, "streamed", stream=True)
            print(f"pipeline, streamed: {streamed}", file=sys.stderr)
            barriers, _ = pipeline(args, engine, folder, "per-stage-calls", stream=False)
            print(f"pipeline, one call per stage: {barriers}", file=sys.stderr)
            ideal = one_call(engine, sent)
        finally:
            engine.close()
    result = {
        "one_call": ideal,
        "pipeline_streamed": streamed,
        "pipeline_per_stage_calls": barriers,
        "ratio_streamed": round(streamed["tokens_per_second"] / ideal["tokens_per_second"], 3),
        "ratio_per_stage_calls": round(
            barriers["tokens_per_second"] / ideal["tokens_per_second"], 3
        ),
        "stories": args.stories,
        "max_actors": args.actors,
        "shard_size": args.shard_size,
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"sample corpus, {args.stories} stories, <= {args.actors} actors each, shard size "
          f"{args.shard_size}; model {args.model}")  # fmt: skip
    print(f"{'run':38} {'requests':>8} {'tokens':>7} {'seconds':>8} {'tokens/s':>9} {'ratio':>6}")
    rows = [
        ("one LLM.chat call, every request", ideal, 1.0),
        ("pipeline, streamed (today)", streamed, result["ratio_streamed"]),
        ("pipeline, one call per stage (before)", barriers, result["ratio_per_stage_calls"]),
    ]
    for label, row, ratio in rows:
        print(f"{label:38} {row['requests']:>8} {row['completion_tokens']:>7} "
              f"{row['seconds']:>8} {row['tokens_per_second']:>9} {ratio:>6.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
