"""The library entry point: one call runs (or resumes) a whole pipeline."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.assemble import assemble
from pipeline.config import RunConfig
from pipeline.engines import EngineSpec
from pipeline.runner import Runner
from pipeline.status import stage_totals


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    engine: str
    engine_seconds: float
    dataset_counts: dict[str, dict[str, int]]


def run_pipeline(config: RunConfig, engine: EngineSpec | None = None) -> RunResult:
    """Run every stage on every shard not already done, then assemble the dataset.

    `engine` replaces the configured engine (tests pass a recording fake)."""
    runner = Runner(config, engine)
    plan = runner.run()
    counts = assemble(runner.run_dir, plan, config.seed, config.license)
    totals = stage_totals(runner.run_dir)
    return RunResult(
        run_dir=runner.run_dir,
        engine=f"{runner.spec.info.name} ({runner.spec.info.model})",
        engine_seconds=sum(t.engine_seconds for t in totals.values()),
        dataset_counts=counts,
    )
