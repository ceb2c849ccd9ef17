"""The engine's share of wall time, per stage, from a run folder's manifest (by default a
fresh small run on the embedded llama.cpp engine).

    python benchmarks/engine_share.py [RUN_DIR]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from emopillars.api import run_pipeline
from emopillars.config import RunConfig
from emopillars.run.status import stage_totals


def report(run_dir: Path) -> None:
    totals = stage_totals(run_dir)
    wall = sum(t.seconds for t in totals.values())
    engine = sum(t.engine_seconds for t in totals.values())
    print(f"{'stage':<11}{'wall_s':>9}{'engine_s':>10}{'share':>8}{'tok/s':>8}")
    for name, t in totals.items():
        share = t.engine_seconds / t.seconds if t.seconds else 0.0
        print(f"{name:<11}{t.seconds:>9.1f}{t.engine_seconds:>10.1f}{share:>8.1%}"
              f"{t.tokens_per_second:>8.1f}")  # fmt: skip
    print(f"{'all':<11}{wall:>9.1f}{engine:>10.1f}{engine / wall if wall else 0:>8.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, nargs="?")
    args = parser.parse_args()
    if args.run_dir is not None:
        report(args.run_dir)
        return
    with tempfile.TemporaryDirectory() as folder:
        config = RunConfig(output=Path(folder) / "run", max_stories=1, max_actors=1)
        run_pipeline(config)
        report(config.output_dir)


if __name__ == "__main__":
    main()
