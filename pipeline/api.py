"""The library entry point: one call runs (or resumes) a whole pipeline."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.assemble import assemble
from pipeline.config import RunConfig
from pipeline.engines import EngineSpec
from pipeline.runner import Runner


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    engine: str
    dataset_counts: dict[str, dict[str, int]]
    # This invocation only: (stage, shard) units computed and skipped as already done.
    shards_computed: int
    shards_skipped: int
    requests_sent: int
    engine_seconds: float


def run_pipeline(config: RunConfig, engine: EngineSpec | None = None) -> RunResult:
    """Run every stage on every shard not already done, then assemble the dataset.

    `engine` replaces the configured engine (tests pass a recording fake)."""
    runner = Runner(config, engine)
    plan = runner.run()
    counts = assemble(runner.run_dir, plan, config.seed, config.license)
    return RunResult(
        run_dir=runner.run_dir,
        engine=f"{runner.spec.info.name} ({runner.spec.info.model})",
        dataset_counts=counts,
        shards_computed=len(runner.computed),
        shards_skipped=runner.skipped,
        requests_sent=sum(marker.requests_sent for marker in runner.computed),
        engine_seconds=sum(marker.engine_seconds for marker in runner.computed),
    )
