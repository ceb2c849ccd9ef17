"""Runner throughput with the fake engine: how fast the pipeline itself (prompt rendering,
fingerprints, parsing, Parquet, manifest, assembly) moves records, single process.

    python benchmarks/runner_throughput.py [--stories 48] [--actors 8]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from emopillars.api import run_pipeline
from emopillars.config import RunConfig
from emopillars.run.status import stage_totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stories", type=int, default=48)
    parser.add_argument("--actors", type=int, default=8)
    parser.add_argument("--shard-size", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        config = RunConfig(
            engine="fake", output=Path(folder) / "run", max_stories=args.stories,
            max_actors=args.actors, shard_size=args.shard_size,
        )  # fmt: skip
        began = time.perf_counter()
        run_pipeline(config)
        wall = time.perf_counter() - began
        totals = stage_totals(config.output_dir)
    utterances = totals["utterances"].outputs
    requests = sum(t.requests_sent for t in totals.values())
    print(f"stories {args.stories}, actors/story <= {args.actors}, shard size {args.shard_size}")
    print(f"utterance records: {utterances}; LLM requests: {requests}; wall {wall:.1f} s")
    print(f"runner throughput: {utterances / wall:.0f} utterance records/s, "
          f"{requests / wall:.0f} requests/s (fake engine, 1 process)")  # fmt: skip


if __name__ == "__main__":
    main()
