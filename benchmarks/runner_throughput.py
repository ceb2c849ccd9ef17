"""Runner throughput with an instant engine: what the pipeline itself (prompt rendering, request
keys, fingerprints, journal, parsing, Parquet, markers) costs per record, single process.

    python benchmarks/runner_throughput.py [--stories 48] [--actors 8] [--shard-size N]
                                           [--repeat 5] [--json]

The engine is instant: a first run records the fake engine's answers by request key; the
measured run, in a fresh folder with the same config, gets each answer by a dict lookup, so
its CPU time is the runner's alone. It runs every stage over a synthetic corpus (the one of
gpu_occupancy.py: 18 named characters per story), at the default settings unless told
otherwise. Records are utterance records (the utterances stage's output rows). CPU seconds
are the process's (user + system), wall seconds include waiting for fsync. Assembly (the
dataset, its quality report and figures: a fixed cost per run, not per record) is not
counted; `--with-assembly` times run_pipeline instead, assembly included.

The measured run is repeated (`--repeat`, each in a fresh folder) and the best is reported,
as timeit does: on a shared or virtual machine the noise only ever adds time, and it varies
by a factor of 1.5 from one minute to the next. The median is printed beside it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from emopillars.config import RunConfig
from emopillars.engines import Request, Result, engine_spec
from emopillars.engines.fake import FakeEngine
from emopillars.run.runner import Runner
from emopillars.run.status import stage_totals
from gpu_occupancy import synthetic_corpus


class RecordingFake(FakeEngine):
    def __init__(self) -> None:
        super().__init__()
        self.answers: dict[str, Result] = {}

    def generate(self, requests: Sequence[Request]) -> list[Result]:
        results = super().generate(requests)
        self.answers.update((r.key, result) for r, result in zip(requests, results, strict=True))
        return results


class InstantEngine:
    """Answers recorded by key: the engine costs a dict lookup."""

    def __init__(self, answers: dict[str, Result]) -> None:
        self.answers = answers

    def generate(self, requests: Sequence[Request]) -> list[Result]:
        return [self.answers[request.key] for request in requests]

    def close(self) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stories", type=int, default=48)
    parser.add_argument("--actors", type=int, default=RunConfig().max_actors)
    parser.add_argument("--shard-size", type=int, default=RunConfig().shard_size)
    parser.add_argument("--repeat", type=int, default=5, help="measured runs; the best counts")
    parser.add_argument("--with-assembly", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        corpus = synthetic_corpus(Path(folder) / "stories.jsonl", args.stories)

        def config(name: str) -> RunConfig:
            return RunConfig(
                engine="fake", corpus=corpus, output=Path(folder) / name,
                max_stories=args.stories, max_actors=args.actors, shard_size=args.shard_size,
            )  # fmt: skip

        recorder = RecordingFake()
        warm = config("warm")
        Runner(warm, replace(engine_spec(warm), load=lambda: recorder)).run()
        timings = []
        for attempt in range(args.repeat):
            measured = config(f"measured-{attempt}")
            spec = replace(engine_spec(measured), load=lambda: InstantEngine(recorder.answers))
            cpu, wall = time.process_time(), time.perf_counter()
            if args.with_assembly:
                from emopillars.api import run_pipeline

                run_pipeline(measured, spec)
            else:
                Runner(measured, spec).run()
            timings.append((time.process_time() - cpu, time.perf_counter() - wall))
        totals = stage_totals(measured.output_dir)
    records = totals["utterances"].outputs
    requests = sum(t.requests_sent for t in totals.values())
    cpu, wall = min(timings)
    median_cpu = statistics.median(c for c, _ in timings)
    figures = {
        "records_per_cpu_second": round(records / cpu, 1),
        "records_per_second": round(records / wall, 1),
        "records_per_cpu_second_median": round(records / median_cpu, 1),
        "utterance_records": records,
        "requests": requests,
        "cpu_s": round(cpu, 3),
        "wall_s": round(wall, 3),
        "repeats": args.repeat,
        "stories": args.stories,
        "max_actors": args.actors,
        "shard_size": args.shard_size,
        "assembly": args.with_assembly,
    }
    if args.json:
        print(json.dumps(figures))
        return
    what = "stages and assembly" if args.with_assembly else "stages, assembly not counted"
    print(f"stories {args.stories}, actors/story <= {args.actors}, shard size {args.shard_size}; "
          f"instant engine, 1 process ({what})")  # fmt: skip
    print(f"utterance records: {records}; LLM requests: {requests}; "
          f"CPU {cpu:.2f} s; wall {wall:.2f} s")  # fmt: skip
    print(f"runner throughput (best of {args.repeat}): {records / cpu:.0f} utterance records "
          f"per CPU-second, {records / wall:.0f} per wall-second; "
          f"median {records / median_cpu:.0f} per CPU-second")  # fmt: skip


if __name__ == "__main__":
    main()
