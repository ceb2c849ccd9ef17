"""Runner throughput with an instant engine: what the pipeline itself (prompt rendering, request
keys, fingerprints, journal, parsing, Parquet, markers) costs per record, single process.

    python benchmarks/runner_throughput.py [--stories 48] [--actors 8] [--shard-size N]
                                           [--repeat 5] [--arrivals N] [--profile N] [--json]

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

`--against-gen0 N` measures the runner's garbage-collector setting (run/garbage.py) against
a youngest-generation threshold of N (700: CPython's own), the two in turn in one process,
so that both see the same minutes of the machine.

`--arrivals N` makes the instant engine a streaming one, as vLLM's and the openai engine
are: requests go in as soon as their inputs exist, and answers come back N at a time (1: one
by one, as a server's do), each arrival journaled and handed to its shard before the next.
What it adds to the figures is the runner's cost per arrival.

`--profile N` runs the measured run once more under cProfile and prints where its time goes:
the N functions with the most time of their own, and each source file's share (ours, by
module; a library's, by package). cProfile adds its own cost to every call, so the shares
lean towards code that makes many small calls; the figures above are measured without it.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import statistics
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from emopillars.config import RunConfig
from emopillars.engines import EngineSpec, Request, Result, engine_spec
from emopillars.engines.fake import FakeEngine
from emopillars.run import garbage
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


class InstantStream(InstantEngine):
    """The instant engine as a streaming one (engines/base.py, StreamingEngine): requests are
    submitted as their inputs exist and answered `arrivals` at a time, oldest first, as
    vLLM's engine loop or a server hands them back, instead of a generate() call at once."""

    def __init__(self, answers: dict[str, Result], arrivals: int) -> None:
        super().__init__(answers)
        self.arrivals = arrivals
        self._queue: deque[Request] = deque()

    def submit(self, requests: Sequence[Request]) -> None:
        self._queue.extend(requests)

    def completed(self) -> list[tuple[str, Result]]:
        queue = self._queue
        answered = [queue.popleft() for _ in range(min(self.arrivals, len(queue)))]
        return [(request.key, self.answers[request.key]) for request in answered]


def instant(answers: dict[str, Result], arrivals: int | None) -> InstantEngine:
    """The instant engine; a streaming one with `arrivals` answers per arrival."""
    return InstantEngine(answers) if arrivals is None else InstantStream(answers, arrivals)


@contextmanager
def recorded_workload(
    stories: int, actors: int, shard_size: int
) -> Iterator[tuple[Callable[[str], RunConfig], RecordingFake]]:
    """A folder holding the synthetic corpus; the config of a run in it, by the run's name
    (the fake engine's, over that corpus); and the fake engine's answers, recorded by a first
    run, for the instant engine."""
    with tempfile.TemporaryDirectory() as folder:
        corpus = synthetic_corpus(Path(folder) / "stories.jsonl", stories)

        def config(name: str) -> RunConfig:
            return RunConfig(
                engine="fake", corpus=corpus, output=Path(folder) / name, max_stories=stories,
                max_actors=actors, shard_size=shard_size,
            )  # fmt: skip

        recorder = RecordingFake()
        warm = config("warm")
        Runner(warm, replace(engine_spec(warm), load=lambda: recorder)).run()
        yield config, recorder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stories", type=int, default=48)
    parser.add_argument("--actors", type=int, default=RunConfig().max_actors)
    parser.add_argument("--shard-size", type=int, default=RunConfig().shard_size)
    parser.add_argument("--repeat", type=int, default=5, help="measured runs; the best counts")
    parser.add_argument("--with-assembly", action="store_true")
    parser.add_argument("--against-gen0", type=int, metavar="N",
                        help="also measure with this gen-0 threshold, in turn")  # fmt: skip
    parser.add_argument("--profile", type=int, metavar="N", default=0,
                        help="profile one more run; print its N costliest functions")  # fmt: skip
    parser.add_argument("--arrivals", type=int, metavar="N",
                        help="a streaming engine, answering N requests at a time")  # fmt: skip
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.arrivals is not None and args.arrivals < 1:
        parser.error("--arrivals must be at least 1")

    with recorded_workload(args.stories, args.actors, args.shard_size) as (config, recorder):

        def engine() -> InstantEngine:
            return instant(recorder.answers, args.arrivals)

        settings = [garbage.GEN0_THRESHOLD]
        if args.against_gen0 is not None:
            settings.append(args.against_gen0)
        timings: dict[int, list[tuple[float, float]]] = {setting: [] for setting in settings}
        for attempt in range(args.repeat):
            # In turn, and each first every other time: neither gets the better minutes.
            for setting in settings if attempt % 2 == 0 else settings[::-1]:
                measured = config(f"measured-{attempt}-{setting}")
                spec = replace(engine_spec(measured), load=engine)
                timings[setting].append(timed_run(measured, spec, setting, args.with_assembly))
        totals = stage_totals(measured.output_dir)
        if args.profile:
            profiled = config("profiled")
            spec = replace(engine_spec(profiled), load=engine)
            profile = profiled_run(profiled, spec)
    records = totals["utterances"].outputs
    requests = sum(t.requests_sent for t in totals.values())
    cpu, wall = min(timings[settings[0]])
    median_cpu = statistics.median(c for c, _ in timings[settings[0]])
    figures: dict[str, Any] = {
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
        "gen0_threshold": settings[0],
        "arrivals": args.arrivals,
    }
    if args.against_gen0 is not None:
        other = timings[args.against_gen0]
        figures["against_gen0"] = {
            "gen0_threshold": args.against_gen0,
            "records_per_cpu_second": round(records / min(other)[0], 1),
            "records_per_cpu_second_median": round(
                records / statistics.median(c for c, _ in other), 1
            ),
        }
    if args.profile:
        figures["profile"] = profile_summary(profile, args.profile)
    if args.json:
        print(json.dumps(figures))
        return
    what = "stages and assembly" if args.with_assembly else "stages, assembly not counted"
    answering = (
        "instant engine"
        if args.arrivals is None
        else (f"instant streaming engine, {args.arrivals} answer(s) per arrival")
    )
    print(f"stories {args.stories}, actors/story <= {args.actors}, shard size {args.shard_size}; "
          f"{answering}, 1 process ({what})")  # fmt: skip
    print(f"utterance records: {records}; LLM requests: {requests}; "
          f"CPU {cpu:.2f} s; wall {wall:.2f} s")  # fmt: skip
    print(f"runner throughput (best of {args.repeat}): {records / cpu:.0f} utterance records "
          f"per CPU-second, {records / wall:.0f} per wall-second; "
          f"median {records / median_cpu:.0f} per CPU-second")  # fmt: skip
    if args.against_gen0 is not None:
        against = figures["against_gen0"]
        print(f"gen-0 threshold {settings[0]} (the runner's) against {args.against_gen0}, in "
              f"turn: {records / cpu:.0f} against {against['records_per_cpu_second']:.0f} "
              f"records per CPU-second (best), {records / median_cpu:.0f} against "
              f"{against['records_per_cpu_second_median']:.0f} (median)")  # fmt: skip
    if args.profile:
        summary = figures["profile"]
        print(f"\nprofiled run (cProfile, {summary['seconds']:.2f} s with its overhead); "
              "share of the time, by function (own time) and by source file:")  # fmt: skip
        for row in summary["functions"]:
            print(f"  {row['share']:6.1%}  {row['calls']:>8,}  {row['function']}")
        for source, share in summary["files"].items():
            print(f"  {share:6.1%}  {source}")


def profiled_run(config: RunConfig, spec: EngineSpec) -> pstats.Stats:
    # CPU time, as the figures above: a wall clock would count fsyncs waiting on the disk.
    profiler = cProfile.Profile(time.process_time)
    profiler.runcall(Runner(config, spec).run)
    return pstats.Stats(profiler)


def profile_summary(stats: pstats.Stats, top: int) -> dict[str, Any]:
    """The `top` functions by own time, and every source file's share (those of at least 1%)."""
    rows = stats.stats  # type: ignore[attr-defined]  # pstats keeps them there, untyped
    total = sum(own for _, _, own, _, _ in rows.values()) or 1.0
    by_source: dict[str, float] = {}
    functions = []
    for (path, line, name), (_, calls, own, _, _) in rows.items():
        source = _source(path)
        by_source[source] = by_source.get(source, 0.0) + own / total
        where = name if path == "~" else f"{_source(path, whole=True)}:{line}({name})"
        functions.append({"function": where, "calls": calls, "share": own / total})
    functions.sort(key=lambda row: -row["share"])
    files = sorted(by_source.items(), key=lambda item: -item[1])
    return {
        "seconds": total,
        "functions": functions[:top],
        "files": {source: share for source, share in files if share >= 0.01},
    }


def _source(path: str, whole: bool = False) -> str:
    """emopillars/run/runner.py for ours, the package for a library's (`whole`: its file),
    `built-in` for C."""
    if path == "~":
        return "built-in"
    parts = Path(path).parts
    for anchor in ("emopillars", "site-packages"):
        if anchor in parts:
            rest = parts[parts.index(anchor) + (anchor == "site-packages") :]
            return "/".join(rest) if anchor == "emopillars" or whole else rest[0]
    return Path(path).name


def timed_run(
    config: RunConfig, spec: EngineSpec, gen0_threshold: int, with_assembly: bool
) -> tuple[float, float]:
    """(CPU, wall) seconds of one run, with this gen-0 threshold in the runner."""
    kept, garbage.GEN0_THRESHOLD = garbage.GEN0_THRESHOLD, gen0_threshold
    try:
        cpu, wall = time.process_time(), time.perf_counter()
        if with_assembly:
            from emopillars.api import run_pipeline

            run_pipeline(config, spec)
        else:
            Runner(config, spec).run()
        return time.process_time() - cpu, time.perf_counter() - wall
    finally:
        garbage.GEN0_THRESHOLD = kept


if __name__ == "__main__":
    main()
