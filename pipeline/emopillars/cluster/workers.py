"""Which worker this process is, and which story shards it owns.

Several workers share one run folder. The assignment is fixed: **story shard s belongs to
worker s % N**. It depends on nothing but s and N, so every worker, a rerun of any of them and
`emopillars assemble` agree on it without talking to each other, and no shard is ever given to
two workers. Round robin rather than contiguous blocks, because corpora are often ordered (by
source, by length) and blocks would hand one worker all the long stories.

When neither a flag nor the config file names the worker, the scheduler's variables do:

- SLURM job arrays: index = (SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN) / SLURM_ARRAY_TASK_STEP,
  count = SLURM_ARRAY_TASK_COUNT, or (MAX - MIN) / STEP + 1 when COUNT is absent (MIN defaults
  to 0 and STEP to 1). An array like --array=1,3,7 has gaps and is refused: use a range.
- Kubernetes Indexed Jobs: index = JOB_COMPLETION_INDEX. A pod is not told the Job's
  `completions`, so the count must be given: --num-workers (or `execution: {num_workers: N}`
  in the config).

SLURM's variables win over Kubernetes' when both are set. Only the local executor reads them:
`--executor ray` hands out shards itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from emopillars.config import ConfigError, RunConfig, describe


@dataclass(frozen=True)
class ScheduledWorker:
    """A worker identity read from a scheduler's environment."""

    index: int
    count: int | None  # None: the scheduler does not say (Kubernetes)
    source: str  # the variables it came from, for messages


def _integer(env: Mapping[str, str], name: str, default: int | None = None) -> int:
    text = env.get(name)
    if text is None or text == "":
        if default is None:
            raise ConfigError(f"{name} is not set")
        return default
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not an integer") from None


def _from_slurm(env: Mapping[str, str]) -> ScheduledWorker:
    task = _integer(env, "SLURM_ARRAY_TASK_ID")
    low = _integer(env, "SLURM_ARRAY_TASK_MIN", default=0)
    step = _integer(env, "SLURM_ARRAY_TASK_STEP", default=1)
    source = f"SLURM_ARRAY_TASK_ID={task} (array min {low}, step {step})"
    if step < 1:
        raise ConfigError(f"{source}: the step must be at least 1")
    offset, remainder = divmod(task - low, step)
    if remainder or offset < 0:
        raise ConfigError(f"{source} is not on the array's range: submit it as --array=0-N")
    if env.get("SLURM_ARRAY_TASK_COUNT"):
        count = _integer(env, "SLURM_ARRAY_TASK_COUNT")
    elif env.get("SLURM_ARRAY_TASK_MAX"):
        count = (_integer(env, "SLURM_ARRAY_TASK_MAX") - low) // step + 1
    else:
        raise ConfigError(
            f"{source}: neither SLURM_ARRAY_TASK_COUNT nor SLURM_ARRAY_TASK_MAX is set; "
            "pass --num-workers"
        )
    if offset >= count:
        # An array with gaps (--array=1,3,7): task ids do not map onto 0..count-1.
        raise ConfigError(
            f"{source} would be worker {offset} of only {count}: use an array without gaps, "
            f"such as --array=0-{count - 1}"
        )
    return ScheduledWorker(index=offset, count=count, source=source)


def scheduled_worker(env: Mapping[str, str]) -> ScheduledWorker | None:
    """The worker a SLURM array task or a Kubernetes indexed pod is, or None outside them."""
    if env.get("SLURM_ARRAY_TASK_ID"):
        return _from_slurm(env)
    if env.get("JOB_COMPLETION_INDEX"):
        index = _integer(env, "JOB_COMPLETION_INDEX")
        return ScheduledWorker(index=index, count=None, source=f"JOB_COMPLETION_INDEX={index}")
    return None


def with_scheduled_worker(config: RunConfig, env: Mapping[str, str]) -> RunConfig:
    """Fill num_workers and worker_index from the scheduler where the flags and the config
    file left them out (explicit values always win)."""
    execution = config.execution
    if execution.executor != "local":
        return config
    given = execution.model_fields_set
    if {"num_workers", "worker_index"} <= given:
        return config
    worker = scheduled_worker(env)
    if worker is None:
        return config
    updates: dict[str, Any] = {}
    if "worker_index" not in given:
        updates["worker_index"] = worker.index
    if "num_workers" not in given:
        if worker.count is None:
            raise ConfigError(
                f"{worker.source} is set (a Kubernetes Indexed Job) but not the number of "
                "workers: pass --num-workers equal to the Job's completions"
            )
        updates["num_workers"] = worker.count
    values = config.model_dump()
    values["execution"] = {**execution.model_dump(exclude_unset=True), **updates}
    try:
        return RunConfig.model_validate(values)
    except ValidationError as error:
        raise ConfigError(f"worker from {worker.source}: {describe(error)}") from None
