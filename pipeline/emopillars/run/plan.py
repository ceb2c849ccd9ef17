"""plan.json: the one plan that every worker of a run folder works from.

The plan names the story shards, the number of workers and the run's identity (a hash of
run.json: the config and the engine, without the execution fields). A single worker owns its
folder: it replaces the plan when the corpus or the config changed, as a resumed run always
could. Workers that share a folder must agree instead: the first one creates plan.json, only
if it is absent and in one atomic step, and every other one checks that the plan it computed
is the same before it writes anything. So no worker ever works from a half-written plan, or
from another worker's corpus, config or worker count.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from emopillars.config import ConfigError
from emopillars.run.layout import RunLayout
from emopillars.run.storage import CorruptFileError, StorageError, read_json, write_json

log = logging.getLogger("emopillars")

# What a difference in each plan field means to the person reading the error.
_MEANING = {
    "shards": "corpus, max_stories or shard_size",
    "stories": "corpus, max_stories or shard_size",
    "story_ids": "corpus, max_stories or shard_size",
    "corpus": "corpus",
    "corpus_rejects": "corpus",
    "run_fingerprint": "config or engine",
    "num_workers": "number of workers",
}


class PlanConflictError(ConfigError):
    """Another worker of this run folder planned it with a different corpus or config."""


# A worker of several must not replace a plan that the others may be reading.
_SHARED_REBUILD = (
    "workers of several cannot rebuild it while others may use it: stop every worker, delete "
    "it and start them all again (finished shards whose files are intact are kept)"
)


def settle_plan(path: Path, plan: dict[str, Any], shared: bool) -> None:
    """Write the plan (alone), or create it or check it against the one on disk (shared).

    Alone, the plan is written only when it changed: a finished run folder stays untouched
    by a run that has nothing to do, and can sit on a read-only mount. An unreadable plan
    is rebuilt alone, and refused, naming it, to a worker of several."""
    if not shared:
        if _current(path) != plan:
            write_json(path, plan)
        return
    # Checked first as well: where hard links are missing, later workers still get through.
    if not path.exists() and _create_once(path, plan):
        return
    existing: dict[str, Any] = read_json(path, todo=_SHARED_REBUILD)
    if existing != plan:
        raise PlanConflictError(_conflict(path, existing, plan))


def _current(path: Path) -> Any:
    """The plan on disk; None when there is none, or (logged) when it is unreadable."""
    if not path.exists():
        return None
    try:
        return read_json(path)
    except CorruptFileError as error:
        log.warning("%s is unreadable (%s): rebuilding it", path, error.problem)
        return None


def _conflict(path: Path, existing: dict[str, Any], plan: dict[str, Any]) -> str:
    keys = sorted(set(existing) | set(plan))
    differences = sorted(
        {_MEANING.get(key, key) for key in keys if existing.get(key) != plan.get(key)}
    )
    workers = ""
    if existing.get("num_workers") != plan.get("num_workers"):
        workers = f" ({existing.get('num_workers')} there, {plan.get('num_workers')} here)"
    return (
        f"{path} was written by a worker with a different {' and '.join(differences)}"
        f"{workers}. All workers of one run folder must use the same corpus, config and "
        f"--num-workers. If you changed them on purpose, stop every worker, delete {path} and "
        "start them all again: finished shards whose inputs and prompts did not change are "
        "kept."
    )


def _create_once(path: Path, value: Any) -> bool:
    """Write `value` as JSON to `path` unless the path exists; True when this call created it.

    The file is written and fsynced under a temporary name, then hard-linked to its name: the
    link fails when the name exists, so of several racing workers exactly one creates it, and
    no one ever reads a partial file. (A rename would silently replace the winner's plan.)
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(json.dumps(value, indent=2, sort_keys=True) + "\n")
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
        except OSError as error:
            if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                raise StorageError(f"could not create {path}: {error}") from error
            raise StorageError(
                f"{path.parent} does not support hard links, which workers sharing a folder "
                f"use to agree on one plan: start one worker alone until {path} exists, then "
                "the others (or use a POSIX shared filesystem: NFS, Lustre, CephFS, EFS)"
            ) from error
        return True
    finally:
        Path(temporary).unlink(missing_ok=True)


def read_plan(layout: RunLayout) -> dict[str, Any]:
    if not layout.plan.exists():
        raise FileNotFoundError(
            f"{layout.root} is not an emopillars run folder (no {layout.plan.name})"
        )
    plan = read_json(layout.plan)
    problem = _plan_shape_problem(plan)
    if problem:
        raise CorruptFileError(layout.plan, problem)
    checked: dict[str, Any] = plan
    return checked


def _plan_shape_problem(plan: Any) -> str | None:
    """What makes a JSON value no plan that readers can use (an edited or foreign file)."""
    if not isinstance(plan, dict):
        return "not a plan: not a JSON object"
    for key, kind in (("shards", int), ("stories", int), ("story_ids", list)):
        if not isinstance(plan.get(key), kind):
            return f"not a plan: no {kind.__name__} {key!r}"
    if not isinstance(plan.get("corpus_rejects", {}), dict):
        return "not a plan: 'corpus_rejects' is not an object"
    return None


# Story shard s belongs to worker s % N: see emopillars.cluster.workers for why.
def owner_of(shard: int, num_workers: int) -> int:
    """The worker that owns a story shard."""
    return shard % num_workers


def shards_of_worker(worker_index: int, num_workers: int, shards: int) -> range:
    """The story shards a worker owns, in order."""
    return range(worker_index, shards, num_workers)


def describe_missing(missing: Iterable[tuple[str, int]], num_workers: int, limit: int = 40) -> str:
    """Lines naming each unfinished (stage, shard) and, with several workers, its owner."""
    missing = list(missing)
    lines = []
    for stage, shard in missing[:limit]:
        owner = f" (worker {owner_of(shard, num_workers)} of {num_workers})"
        lines.append(f"  {stage}/shard-{shard:05d}" + (owner if num_workers > 1 else ""))
    if len(missing) > limit:
        lines.append(f"  ... and {len(missing) - limit} more")
    if num_workers > 1:
        owners = sorted({owner_of(shard, num_workers) for _, shard in missing})
        lines.append(
            f"workers with shards left: {', '.join(map(str, owners))} (of {num_workers}); "
            "run them again (they resume), then assemble"
        )
    else:
        lines.append("run the same `emopillars run` command again (it resumes), then assemble")
    return "\n".join(lines)
