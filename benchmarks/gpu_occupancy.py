"""GPU occupancy of the runner's schedule on a simulated continuous-batching engine, and the
H100-hours it projects for the paper-scale run (2,000 stories × 15 characters × 10
utterances: 1.23M requests, the method's calls without retries).

    python benchmarks/gpu_occupancy.py [--stories 64] [--shard-sizes 4 16 64]
        [--from-run RUN_DIR] [--prefill-tps 30000] [--json]

Each row runs the real pipeline (emopillars.api.run_pipeline, whatever schedule it has) on
a synthetic corpus of `--stories` stories with 18 named characters each, `--max-actors 15`,
against benchmarks/simulated_engine.py (256 slots, a decode step of 12 ms + 0.05 ms per
active sequence, prefill at 30,000 tokens/s; its docstring states the model), driven as the
runner drives vLLM: as a stream (benchmarks/simulated_stream.py), with vLLM's spec (1024
requests in flight, over as many story shards as that takes). `--batch` drives it through
generate() instead, merged batches of up to 1024 requests (vLLM without enqueue_chat).
Occupancy = the time of an always-full engine for the same tokens ÷ the simulated time.
The paper-scale projection takes each stage's mean work per request (completion and
prefill tokens) in the row's run, times the paper run's requests of that stage (1.232M in
all: see PAPER_REQUESTS), and divides that work's always-full time by the row's occupancy.
Rows: the default settings (RunConfig's shard size) with uniform and with exponential
(skewed) completion lengths, then each `--shard-sizes` value with uniform lengths. A run of
64 stories takes about a minute of CPU per row.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from emopillars.api import run_pipeline
from emopillars.config import RunConfig
from emopillars.engines import engine_spec
from emopillars.run.status import stage_totals
from simulated_engine import GpuModel, Lengths, Shape, SimulatedEngine
from simulated_stream import StreamingSimulatedEngine

VLLM_IN_FLIGHT = 1024  # engines/__init__.py, _vllm_spec

# The paper-scale run's requests per stage: the method's calls, one per story (actors), per
# character (utterances), per utterance (labels, rewrites) and two per utterance (contexts:
# write, then clean). Retries are not counted: the fake answers' retry rate (their gate
# rejects) says nothing about a teacher's.
_STORIES, _CHARACTERS, _UTTERANCES = 2_000, 2_000 * 15, 2_000 * 15 * 10
PAPER_REQUESTS = {"actors": _STORIES, "utterances": _CHARACTERS, "labels": _UTTERANCES,
                  "contexts": 2 * _UTTERANCES, "rewrites": _UTTERANCES}  # fmt: skip
NAMES = (
    "Alba Brann Cora Dario Elsa Fenn Greta Hale Ines Jory Kasia Lorn Mira Nils Orla Piet "
    "Quinn Rhea Sven Tamsin Ulla Vero Wend Yara"
).split()
PLACES = ("harbour", "market", "mill", "school", "orchard", "ferry", "mine", "theatre")
THINGS = ("debt", "letter", "boat", "harvest", "secret", "promise", "key", "will")


def synthetic_corpus(path: Path, stories: int, characters: int = 18) -> Path:
    """Stories of `characters` named people each, every name in mid-sentence."""
    with path.open("w", encoding="utf-8") as handle:
        for number in range(stories):
            rng = random.Random(number)
            names = rng.sample(NAMES, characters)
            sentences = [
                f"In the {rng.choice(PLACES)} town, {name} argues with "
                f"{names[(i + 1) % characters]} about the {rng.choice(THINGS)} that "
                f"{rng.choice(('nobody', 'everyone'))} remembers."
                for i, name in enumerate(names)
            ]
            row = {"id": f"sim-{number:05d}", "title": f"Story {number}",
                   "text": " ".join(sentences)}  # fmt: skip
            handle.write(json.dumps(row) + "\n")
    return path


def measure(
    corpus: Path,
    stories: int,
    actors: int,
    shard_size: int,
    lengths: Lengths,
    model: GpuModel,
    batch: bool = False,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        config = RunConfig(
            engine="fake", corpus=corpus, output=Path(folder) / "run", max_stories=stories,
            max_actors=actors, shard_size=shard_size,
        )  # fmt: skip
        kind = SimulatedEngine if batch else StreamingSimulatedEngine
        engine = kind(config, model, lengths)
        # The vLLM engine's spec: its in-flight depth; without a stream, all of it per call.
        spec = replace(
            engine_spec(config),
            load=lambda: engine,
            batch_size=None,
            max_in_flight=VLLM_IN_FLIGHT,
        )
        began = time.perf_counter()
        run_pipeline(config, spec)
        wall = time.perf_counter() - began
        characters = stage_totals(config.output_dir)["actors"].outputs
    paper_ideal_s = 0.0
    for stage, paper_requests in PAPER_REQUESTS.items():
        work = engine.work[stage]
        ideal = model.ideal_s(work.completion_tokens, work.prefill_tokens)
        paper_ideal_s += paper_requests * ideal / work.requests
    requests = sum(w.requests for w in engine.work.values())
    prefill = sum(w.prefill_tokens for w in engine.work.values())
    return {
        "shard_size": shard_size,
        "lengths": lengths.shape,
        "requests": requests,
        "engine_calls": engine.calls,
        "simulated_s": engine.clock_s,
        "ideal_s": engine.ideal_s,
        "occupancy": engine.occupancy,
        "characters": characters,
        "prefill_share": model.ideal_s(0, prefill) / engine.ideal_s,
        "paper_ideal_h": paper_ideal_s / 3600,
        "h100_hours": paper_ideal_s / engine.occupancy / 3600,
        "wall_s": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stories", type=int, default=64)
    parser.add_argument("--max-actors", type=int, default=15)
    parser.add_argument("--shard-sizes", type=int, nargs="+", default=[4, 16, 64])
    parser.add_argument("--from-run", type=Path, help="completion lengths from a run folder")
    parser.add_argument("--slots", type=int, default=256)
    parser.add_argument("--prefill-tps", type=float, default=30_000.0,
                        help="prefill tokens per second; 0: prefill costs nothing")  # fmt: skip
    parser.add_argument("--batch", action="store_true",
                        help="drive the engine through generate() (no stream)")  # fmt: skip
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    prefill = 1 / args.prefill_tps if args.prefill_tps else 0.0
    model = GpuModel(slots=args.slots, prefill_per_token_s=prefill)

    def lengths(shape: Shape) -> Lengths:
        return Lengths.from_run(args.from_run, shape) if args.from_run else Lengths(shape=shape)

    default_shard = RunConfig().shard_size
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as folder:
        corpus = synthetic_corpus(Path(folder) / "stories.jsonl", args.stories)

        def row(shard_size: int, shape: Shape) -> dict[str, Any]:
            return measure(corpus, args.stories, args.max_actors, shard_size, lengths(shape),
                           model, args.batch)  # fmt: skip

        rows["default"] = row(default_shard, "uniform")
        rows["default, exponential"] = row(default_shard, "exponential")
        for size in args.shard_sizes:
            same = size == default_shard
            rows[f"shard size {size}"] = rows["default"] if same else row(size, "uniform")
    if args.json:
        print(json.dumps({
            "occupancy_default": round(rows["default"]["occupancy"], 3),
            "occupancy_exponential_default": round(rows["default, exponential"]["occupancy"], 3),
            "occupancy_by_shard_size": {
                str(size): round(rows[f"shard size {size}"]["occupancy"], 3)
                for size in args.shard_sizes
            },
            "h100_hours_default": round(rows["default"]["h100_hours"], 3),
            "rows": rows,
        }))  # fmt: skip
        return
    first = rows["default"]
    print(f"{args.stories} synthetic stories, up to {args.max_actors} characters each; "
          f"simulated engine: {model.slots} slots, step {model.step_base_s * 1000:g} ms + "
          f"{model.step_per_sequence_s * 1000:g} ms/sequence; default shard size "
          f"{default_shard}; {first['characters']} characters; paper scale: "
          f"{sum(PAPER_REQUESTS.values()):,} requests")  # fmt: skip
    print(f"{'run':<22}{'requests':>9}{'calls':>7}{'req/call':>9}{'sim_s':>9}{'ideal_s':>9}"
          f"{'occupancy':>10}{'paper_H100_h':>13}{'wall_s':>8}")  # fmt: skip
    for name, r in rows.items():
        print(f"{name:<22}{r['requests']:>9}{r['engine_calls']:>7}"
              f"{r['requests'] / r['engine_calls']:>9.1f}{r['simulated_s']:>9.1f}"
              f"{r['ideal_s']:>9.1f}{r['occupancy']:>10.1%}{r['h100_hours']:>13.2f}"
              f"{r['wall_s']:>8.1f}")  # fmt: skip
    print(f"an always-full engine would take {first['paper_ideal_h']:.2f} H100-hours at paper "
          f"scale (uniform lengths); prefill is {first['prefill_share']:.0%} of it")  # fmt: skip


if __name__ == "__main__":
    main()
