"""Runner cost in instructions, not seconds: the instant-engine workload of
runner_throughput.py, counted by valgrind's cachegrind, which a busy or virtual machine
cannot blur.

    python benchmarks/runner_instructions.py [--stories 48] [--actors 8] [--shard-size N]
                                             [--arrivals N] [--json]

On a shared VM the same code measures up to 1.8 times apart in CPU seconds from one hour to
the next, so a change worth a few percent cannot be judged by timing it. Instructions can be:
with the hash seed fixed, counts of the same code here were within 1% of each other.
Two processes run under cachegrind, side by side: each records the fake engine's answers, then
does one or two measured runs with the instant engine. The difference between them is one
measured run's user-space instructions, printed per run, per utterance record and per request.
The kernel's work (file creation, fsyncs) is not counted; runner_throughput.py's CPU seconds
include it.

Needs valgrind (Debian: `apt-get install valgrind`); about a minute and a half on 2 cores at
the defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace

from emopillars.config import RunConfig
from emopillars.engines import engine_spec
from emopillars.run.runner import Runner
from emopillars.run.status import stage_totals
from runner_throughput import instant, recorded_workload

_INSTRUCTIONS = re.compile(r"I\s+refs:\s+([\d,]+)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stories", type=int, default=48)
    parser.add_argument("--actors", type=int, default=RunConfig().max_actors)
    parser.add_argument("--shard-size", type=int, default=RunConfig().shard_size)
    parser.add_argument("--arrivals", type=int, metavar="N",
                        help="a streaming engine, answering N requests at a time")  # fmt: skip
    parser.add_argument("--json", action="store_true")
    # What one of the two counted processes does: the recording run, then this many measured
    # runs; it prints the last run's records and requests.
    parser.add_argument("--measured-runs", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arrivals is not None and args.arrivals < 1:
        parser.error("--arrivals must be at least 1")
    if args.measured_runs is not None:
        print(json.dumps(workload(args, args.measured_runs)))
        return
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        sys.exit("runner_instructions: valgrind is not installed (apt-get install valgrind)")

    counts, sizes = count_instructions(valgrind, args)
    per_run = counts[2] - counts[1]
    records, requests = sizes["records"], sizes["requests"]
    figures = {
        "instructions_per_run": per_run,
        "instructions_per_record": round(per_run / records),
        "instructions_per_request": round(per_run / requests),
        "utterance_records": records,
        "requests": requests,
        "stories": args.stories,
        "max_actors": args.actors,
        "shard_size": args.shard_size,
        "arrivals": args.arrivals,
    }
    if args.json:
        print(json.dumps(figures))
        return
    answering = "instant engine" if args.arrivals is None else (
        f"instant streaming engine, {args.arrivals} answer(s) per arrival"
    )  # fmt: skip
    print(f"stories {args.stories}, actors/story <= {args.actors}, shard size {args.shard_size}; "
          f"{answering}; user-space instructions (cachegrind)")  # fmt: skip
    print(f"utterance records: {records}; LLM requests: {requests}")
    print(f"one run: {per_run / 1e6:,.1f}M instructions; {per_run / records:,.0f} per utterance "
          f"record, {per_run / requests:,.0f} per request")  # fmt: skip


def count_instructions(
    valgrind: str, args: argparse.Namespace
) -> tuple[dict[int, int], dict[str, int]]:
    """Instructions of the processes with one and with two measured runs, and the sizes
    (records, requests) of a measured run."""
    options = ["--stories", str(args.stories), "--actors", str(args.actors),
               "--shard-size", str(args.shard_size)]  # fmt: skip
    if args.arrivals is not None:
        options += ["--arrivals", str(args.arrivals)]
    running = {runs: _counted(valgrind, runs, options) for runs in (1, 2)}
    counts: dict[int, int] = {}
    sizes: dict[str, int] = {}
    for runs, process in running.items():
        out, err = process.communicate()
        found = _INSTRUCTIONS.search(err)
        if process.returncode != 0 or found is None:
            sys.exit(f"runner_instructions: the counted run failed:\n{err[-2000:]}")
        counts[runs] = int(found.group(1).replace(",", ""))
        sizes = json.loads(out)
    return counts, sizes


def _counted(valgrind: str, runs: int, options: list[str]) -> subprocess.Popen[str]:
    """This script, doing `runs` measured runs, under cachegrind."""
    command = [valgrind, "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
               sys.executable, __file__, "--measured-runs", str(runs), *options]  # fmt: skip
    # A fixed hash seed: sets and dicts of strings then behave the same from count to count.
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def workload(args: argparse.Namespace, measured_runs: int) -> dict[str, int]:
    """The recording run, then `measured_runs` runs with the instant engine, each in a fresh
    folder; the records and requests of the last."""
    with recorded_workload(args.stories, args.actors, args.shard_size) as (config, recorder):
        for attempt in range(measured_runs):
            measured = config(f"measured-{attempt}")
            spec = replace(
                engine_spec(measured), load=lambda: instant(recorder.answers, args.arrivals)
            )
            Runner(measured, spec).run()
        totals = stage_totals(measured.output_dir)
    return {
        "records": totals["utterances"].outputs,
        "requests": sum(t.requests_sent for t in totals.values()),
    }


if __name__ == "__main__":
    main()
