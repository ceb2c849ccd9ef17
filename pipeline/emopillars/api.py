"""The library entry point: one call runs (or resumes) a whole pipeline."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from emopillars.config import RunConfig
from emopillars.dataset.assemble import assemble
from emopillars.engines import EngineSpec
from emopillars.run.layout import RunLayout
from emopillars.run.plan import read_plan, shards_of_worker
from emopillars.run.record import read_run_record
from emopillars.run.runner import ProgressHook, Runner


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    engine: str
    # None for one worker of several: `emopillars assemble` builds the dataset once all are done.
    dataset_counts: dict[str, dict[str, int]] | None
    story_shards: tuple[int, ...]  # the story shards this invocation was responsible for
    # This invocation only: (stage, shard) units computed and skipped as already done.
    shards_computed: int
    shards_skipped: int
    requests_sent: int
    engine_seconds: float


def run_pipeline(
    config: RunConfig, engine: EngineSpec | None = None, on_shard: ProgressHook | None = None
) -> RunResult:
    """Run every stage on every shard not already done, then assemble the dataset.

    As one of several workers (`config.execution.num_workers`), run only this worker's story
    shards and leave assembly to `assemble_run`. `engine` replaces the configured engine (tests
    pass a recording fake); `on_shard` is called after each (stage, shard), with its marker, or None
    when it was already done."""
    runner = Runner(config, engine, on_shard)
    if config.execution.executor == "ray":
        from emopillars.cluster.ray_tasks import run_on_ray  # Ray is an optional extra

        plan = run_on_ray(runner, engine)
    else:
        plan = runner.run()
    alone = config.execution.num_workers == 1
    counts = assemble(runner.run_dir, plan, config.seed, config.license) if alone else None
    return RunResult(
        run_dir=runner.run_dir,
        engine=f"{runner.spec.info.name} ({runner.spec.info.model})",
        dataset_counts=counts,
        story_shards=tuple(
            shards_of_worker(
                config.execution.worker_index, config.execution.num_workers, plan["shards"]
            )
        ),
        shards_computed=len(runner.computed),
        shards_skipped=runner.skipped,
        requests_sent=sum(marker.requests_sent for marker in runner.computed),
        engine_seconds=sum(marker.engine_seconds for marker in runner.computed),
    )


def assemble_run(run_dir: Path) -> dict[str, dict[str, int]]:
    """Build the dataset of a run folder whose shards are all done, with the seed and license
    the run recorded; raises IncompleteRunError naming the missing shards otherwise."""
    layout = RunLayout(run_dir)
    plan = read_plan(layout)
    record = read_run_record(layout)
    counts: dict[str, dict[str, int]] = assemble(run_dir, plan, record.seed, record.license)
    return counts
