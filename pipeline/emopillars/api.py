"""The library entry point: one call runs (or resumes) a whole pipeline."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emopillars.config import RunConfig
from emopillars.dataset.assemble import assemble
from emopillars.engines import EngineSpec
from emopillars.run import lock
from emopillars.run.check import RunCheck, check_run
from emopillars.run.layout import RunLayout
from emopillars.run.plan import read_plan, shards_of_worker
from emopillars.run.record import read_run_record
from emopillars.run.runner import ProgressHook, Runner
from emopillars.run.status import stage_totals
from emopillars.stages import STAGES

# Reject reasons of answers that ignored the JSON schema, and what to change for each engine.
_OFF_SCHEMA = ("invalid_json", "schema_violation", "empty")
_SCHEMA_HINTS = {
    "openai": "the server may ignore the schema as it is sent: try another "
    "--structured-outputs mode (vllm for vllm serve, llamacpp for llama.cpp servers, "
    "json_schema for OpenAI, SGLang and others)",
    "vllm": "the model does not keep to the schema: check that vLLM's structured outputs "
    "are enabled, or try a bigger model",
    "llamacpp": "the model does not keep to the schema: try a bigger model (--model)",
}


class EmptyResultError(RuntimeError):
    """The run finished with nothing to show: no story survived the corpus checks, or a
    stage accepted none of its inputs. Finished shards and the dataset are kept."""


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
    # One writer per folder (run/lock.py), through assembly, which writes dataset/ too.
    with lock.for_run(config):
        if config.execution.executor == "ray":
            from emopillars.cluster.ray_tasks import run_on_ray  # Ray is an optional extra

            plan = run_on_ray(runner, engine)
        else:
            plan = runner.run()
        alone = config.execution.num_workers == 1
        counts = assemble(runner.run_dir, plan, config.seed, config.license) if alone else None
    # Only a lone run sees every shard's totals; any worker sees the corpus that all share.
    _raise_if_empty(config, runner.run_dir, plan, stages=alone)
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


def _raise_if_empty(config: RunConfig, run_dir: Path, plan: dict[str, Any], stages: bool) -> None:
    where = f"the rejects are in {run_dir}"
    if not plan["stories"]:
        raise EmptyResultError(
            f"no story of the corpus was usable (corpus rejects: "
            f"{_reasons(plan['corpus_rejects'])}); {where}/"
            "stories/rejects.parquet, with the row and the reason of each"
        )
    if not stages:
        return
    calls = {stage.name: [step.call for step in stage.steps] for stage in STAGES}
    for name, total in stage_totals(run_dir).items():
        if total.shards_done < total.shards_total or total.outputs:
            continue
        reasons = total.reject_reasons
        rejected = sum(reasons.values())
        hint = ""
        if sum(reasons.get(reason, 0) for reason in _OFF_SCHEMA) * 2 > rejected:
            hint = _SCHEMA_HINTS.get(config.engine, "")
        elif reasons.get("truncated", 0) * 2 > rejected:
            budgets = " ".join(f"--max-tokens {call}=N" for call in calls[name])
            hint = f"the answers hit max_tokens: raise it ({budgets})"
        raise EmptyResultError(
            f"stage {name} kept nothing: it accepted {total.accepted} of its {total.inputs} "
            f"inputs (rejects: {_reasons(reasons)}); {where}/{name}/rejects-*.parquet"
            + (f"\nhint: {hint}" if hint else "")
        )


def _reasons(counts: dict[str, int]) -> str:
    ordered = sorted(counts.items(), key=lambda item: -item[1])
    return ", ".join(f"{reason} {n}" for reason, n in ordered) or "none"


def check_run_folder(run_dir: Path) -> RunCheck:
    """Verify a run folder's integrity chain and its dataset against dataset/manifest.json;
    reads only (`emopillars assemble --check`)."""
    return check_run(run_dir, read_plan(RunLayout(run_dir)))


def assemble_run(run_dir: Path) -> dict[str, dict[str, int]]:
    """Build the dataset of a run folder whose shards are all done, with the seed and license
    the run recorded; raises IncompleteRunError naming the missing shards otherwise."""
    layout = RunLayout(run_dir)
    plan = read_plan(layout)
    record = read_run_record(layout)
    counts: dict[str, dict[str, int]] = assemble(run_dir, plan, record.seed, record.license)
    return counts
