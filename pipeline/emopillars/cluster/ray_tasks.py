"""`--executor ray`: one Ray task per story shard, on an existing Ray cluster or a local one.

The driver plans the run (as the folder's single writer), hands each story shard to a task,
and assembles the dataset when all tasks are done. A task runs every stage of its shard
through the ordinary Runner, with its own engine, and writes to the run folder exactly as a
worker process would: the same resume rules, the same files. So the run folder and the corpus
must be on a filesystem that every node mounts at the same path.

Ray is an optional extra (`pip install 'emopillars[ray]'`), imported only here.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import ModuleType
from typing import Any

from emopillars.config import ConfigError, RunConfig
from emopillars.engines import EngineSpec
from emopillars.run.manifest import ShardMarker
from emopillars.run.runner import Runner

log = logging.getLogger("emopillars")

RAY_HINT = "--executor ray needs Ray: pip install 'emopillars[ray]'"

StageEvent = tuple[str, ShardMarker | None]  # (stage, its new marker or None when done before)


def import_ray() -> ModuleType:
    try:
        import ray
    except ImportError as error:
        raise ConfigError(RAY_HINT) from error
    return ray


def run_story_shard(config: RunConfig, shard: int, spec: EngineSpec | None) -> list[StageEvent]:
    """The body of one Ray task: every stage of one story shard, resumably."""
    done: list[StageEvent] = []
    runner = Runner(config, spec, on_shard=lambda stage, _, marker: done.append((stage, marker)))
    runner.run_shards([shard])
    return done


def gpus_per_task(config: RunConfig) -> float:
    if config.execution.gpus_per_task is not None:
        return config.execution.gpus_per_task
    # vLLM needs one GPU per tensor-parallel rank; the other engines run on CPUs or a server.
    return float(config.vllm.tensor_parallel_size) if config.engine == "vllm" else 0.0


def _for_any_node(config: RunConfig) -> RunConfig:
    """Paths made absolute: a task's working folder may differ from the driver's. (Paths are
    not part of any fingerprint, so this changes no result.)"""
    updates: dict[str, Any] = {"output": config.output_dir.resolve()}
    if config.corpus is not None:
        updates["corpus"] = config.corpus.resolve()
    if config.prompts_dir is not None:
        updates["prompts_dir"] = config.prompts_dir.resolve()
    if config.engine == "llamacpp" and config.model is not None:
        updates["model"] = str(Path(config.model).resolve())
    return config.model_copy(update=updates)


def run_on_ray(runner: Runner, engine: EngineSpec | None = None) -> dict[str, Any]:
    """Plan with `runner`, run every story shard as a Ray task, and return the plan.

    `engine` (tests) travels to the tasks; by default each task builds the configured engine
    itself, on its own node."""
    ray = import_ray()  # before anything is written: a missing extra fails at once
    plan = runner.prepare()
    config = _for_any_node(runner.config)
    started_here = not ray.is_initialized()
    if started_here:
        # None: RAY_ADDRESS (set inside `ray job submit`), else a new local instance.
        try:
            ray.init(address=config.execution.ray_address)
        except ConnectionError as error:
            where = config.execution.ray_address or "from RAY_ADDRESS"
            raise RuntimeError(f"cannot join the Ray cluster {where}: {error}") from None
    failures: dict[int, str] = {}
    try:
        task = ray.remote(run_story_shard).options(num_gpus=gpus_per_task(config))
        pending = {task.remote(config, shard, engine): shard for shard in range(plan["shards"])}
        log.info("%d story shards sent to Ray as tasks", len(pending))
        while pending:
            [ready], _ = ray.wait(list(pending), num_returns=1)
            shard = pending.pop(ready)
            try:
                events: list[StageEvent] = ray.get(ready)
            except ray.exceptions.RayError as error:
                # The other shards go on; the failed ones are reported together at the end.
                failures[shard] = str(error).strip().splitlines()[-1]
                log.warning("story shard %d failed on Ray: %s", shard, failures[shard])
                continue
            for stage, marker in events:
                _record(runner, stage, shard, marker)
    finally:
        if started_here:
            ray.shutdown()
    if failures:
        lines = "\n".join(
            f"  story shard {shard}: {why}" for shard, why in sorted(failures.items())
        )
        raise RuntimeError(f"{len(failures)} of {plan['shards']} story shards failed:\n{lines}")
    return plan


def _record(runner: Runner, stage: str, shard: int, marker: ShardMarker | None) -> None:
    """Count a task's (stage, shard) in the driver's runner, as if it had run there."""
    if marker is None:
        runner.skipped += 1
    else:
        runner.computed.append(marker)
    if runner.on_shard is not None:
        runner.on_shard(stage, shard, marker)
