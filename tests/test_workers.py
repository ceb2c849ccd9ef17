"""Workers sharing one run folder: the assignment rule, the worker identity a scheduler gives,
the one plan all workers agree on, and the invariant that matters: the dataset that several
`emopillars run` processes and `emopillars assemble` build is, row for row, the single-worker
dataset, also after a worker is killed with SIGKILL and run again."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import dataset_contents, fake_config
from emopillars.api import run_pipeline
from emopillars.cli import main
from emopillars.cluster.workers import with_scheduled_worker
from emopillars.config import ConfigError, load_config
from emopillars.run.layout import RunLayout
from emopillars.run.plan import (
    PlanConflictError,
    owner_of,
    read_plan,
    settle_plan,
    shards_of_worker,
)
from emopillars.stages import STAGE_NAMES

RUN = [sys.executable, "-m", "emopillars", "run"]
TESTS = Path(__file__).parent


def run_flags(corpus: Path, run_dir: Path) -> list[str]:
    """`run` flags of the same config as `fake_config(corpus, run_dir, shard_size=1)`."""
    return ["--engine", "fake", "--corpus", str(corpus), "--output", str(run_dir),
            "--shard-size", "1", "--max-actors", "2", "--quiet"]  # fmt: skip


def start_worker(flags: list[str], index: int, count: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*RUN, *flags, "--num-workers", str(count), "--worker-index", str(index)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def reference_dataset(corpus: Path, tmp_path: Path) -> dict[str, object]:
    config = fake_config(corpus, tmp_path / "single-worker", shard_size=1)
    run_pipeline(config)
    return dataset_contents(config.output_dir)


def markers_of(run_dir: Path) -> dict[tuple[str, int], str]:
    return {
        (path.parent.name, int(path.stem.split("-")[1])): path.read_text()
        for path in (run_dir / "manifest").glob("*/shard-*.json")
    }


# -- the assignment rule ------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2, 3, 5])
def test_every_story_shard_has_exactly_one_owner(workers: int) -> None:
    shards = 13
    dealt = [list(shards_of_worker(index, workers, shards)) for index in range(workers)]
    assert sorted(shard for own in dealt for shard in own) == list(range(shards))
    for index, own in enumerate(dealt):
        assert own == [shard for shard in range(shards) if shard % workers == index]
        assert all(owner_of(shard, workers) == index for shard in own)


# -- worker identity from flags, the config file and schedulers ---------------------------


@pytest.mark.parametrize(
    ("env", "flags", "expected"),
    [
        ({}, {}, (1, 0)),
        ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4"}, {}, (4, 3)),
        # --array=4-7: task ids start at 4; no COUNT, so MAX - MIN + 1.
        ({"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_MIN": "4", "SLURM_ARRAY_TASK_MAX": "7"},
         {}, (4, 1)),
        # --array=0-12:4: ids 0, 4, 8, 12.
        ({"SLURM_ARRAY_TASK_ID": "8", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "12",
          "SLURM_ARRAY_TASK_STEP": "4"}, {}, (4, 2)),
        ({"JOB_COMPLETION_INDEX": "2"}, {"num_workers": 3}, (3, 2)),
        # Explicit values win, field by field.
        ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4"},
         {"num_workers": 2, "worker_index": 1}, (2, 1)),
        ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4"}, {"num_workers": 8}, (8, 3)),
        # SLURM before Kubernetes.
        ({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2", "JOB_COMPLETION_INDEX": "0"},
         {}, (2, 1)),
    ],
)  # fmt: skip
def test_worker_identity_from_the_scheduler(
    env: dict[str, str], flags: dict[str, int], expected: tuple[int, int]
) -> None:
    config = with_scheduled_worker(load_config(None, engine="fake", **flags), env)
    assert (config.execution.num_workers, config.execution.worker_index) == expected


def test_the_config_file_wins_over_the_scheduler(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("engine: fake\nnum_workers: 2\nworker_index: 0\n")
    env = {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4"}
    config = with_scheduled_worker(load_config(path), env)
    assert (config.execution.num_workers, config.execution.worker_index) == (2, 0)


def test_the_ray_executor_takes_no_worker_identity() -> None:
    env = {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4"}
    config = with_scheduled_worker(load_config(None, engine="fake", executor="ray"), env)
    assert (config.execution.num_workers, config.execution.worker_index) == (1, 0)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"JOB_COMPLETION_INDEX": "1"}, "pass --num-workers equal to the Job's completions"),
        # --array=1,3,7 has gaps: task 7 cannot be worker 6 of 3.
        ({"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "3"},
         "use an array without gaps"),
        ({"SLURM_ARRAY_TASK_ID": "one", "SLURM_ARRAY_TASK_COUNT": "3"}, "not an integer"),
        ({"SLURM_ARRAY_TASK_ID": "1"}, "pass --num-workers"),
    ],
)  # fmt: skip
def test_unusable_worker_identities_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        with_scheduled_worker(load_config(None, engine="fake"), env)


def test_a_worker_index_out_of_range_stops_before_anything_is_written(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    code = main(["run", *run_flags(corpus, out), "--num-workers", "2", "--worker-index", "2"])
    assert code == 2
    assert "worker_index 2 is not below num_workers 2" in capsys.readouterr().err
    assert not out.exists()


# -- the plan all workers agree on ----------------------------------------------------------


def test_racing_workers_create_one_plan(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    racers = 8
    start = threading.Barrier(racers)
    outcomes: dict[int, str] = {}

    def settle(index: int) -> None:
        start.wait()
        try:
            settle_plan(path, {"shards": index}, shared=True)
            outcomes[index] = "agreed"
        except PlanConflictError:
            outcomes[index] = "refused"

    threads = [threading.Thread(target=settle, args=(i,)) for i in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [index for index, outcome in outcomes.items() if outcome == "agreed"]
    assert len(winners) == 1 and len(outcomes) == racers
    assert path.read_text() == f'{{\n  "shards": {winners[0]}\n}}\n'
    assert not list(tmp_path.glob(".plan.json.*"))  # no temporary file left behind
    # Workers that computed the same plan all agree with it.
    settle_plan(path, {"shards": winners[0]}, shared=True)


@pytest.mark.parametrize(
    ("different", "named"),
    [
        ({"max_stories": 4}, "corpus, max_stories or shard_size"),
        ({"max_actors": 3}, "config or engine"),
        ({"num_workers": 3}, "number of workers (2 there, 3 here)"),
    ],
)
def test_a_worker_with_another_corpus_or_config_is_refused(
    different: dict[str, int], named: str, corpus: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    first = fake_config(corpus, run_dir, num_workers=2, worker_index=0)
    result = run_pipeline(first)
    assert result.dataset_counts is None and result.story_shards == (0, 2)
    before = {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()}

    second = fake_config(corpus, run_dir, **{"num_workers": 2, "worker_index": 1, **different})
    with pytest.raises(PlanConflictError, match=re.escape(named)) as refused:
        run_pipeline(second)
    assert "delete" in str(refused.value)
    # It wrote nothing: not a story shard, not a plan, not a marker.
    after = {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()}
    assert after == before


def test_a_single_worker_replans_its_own_folder(corpus: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_pipeline(fake_config(corpus, run_dir, max_stories=4))
    result = run_pipeline(fake_config(corpus, run_dir))
    assert result.dataset_counts is not None
    assert read_plan(RunLayout(run_dir))["stories"] == 6


# -- the invariant --------------------------------------------------------------------------


def test_worker_processes_build_the_single_worker_dataset(corpus: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "shared"
    flags = run_flags(corpus, run_dir)
    # All three start at once on a fresh folder: they race to plan it.
    workers = [start_worker(flags, index, 3) for index in range(3)]
    outputs = [worker.communicate(timeout=120) for worker in workers]
    computed = 0
    for index, (worker, (out, err)) in enumerate(zip(workers, outputs, strict=True)):
        assert worker.returncode == 0, err
        assert f"worker {index} of 3 done: story shards {index}, {index + 3}" in out
        assert "emopillars assemble" in out
        done = re.search(r"(\d+) stage shards computed, (\d+) already done", out)
        assert done is not None and done[2] == "0"
        computed += int(done[1])
    # 6 story shards x 5 stages, each computed once: no shard was done by two workers.
    assert computed == 6 * len(STAGE_NAMES)
    assert not (run_dir / "dataset").exists()  # a worker of several does not assemble

    assert main(["assemble", str(run_dir)]) == 0
    assert dataset_contents(run_dir) == reference_dataset(corpus, tmp_path)


# Worker 1 of 2 (story shards 1, 3, 5) in a child process: the config `run` builds from the same
# flags, run with a sequential engine (batches of 3 requests, each journaled) that kills its own
# process right before the first batch that finds story shard 1 through every stage and answers
# of story shard 3 journaled: inside a shard, never between two. It reads only its own shards'
# files, runs one thread on the deterministic fake engine, and so dies at the same batch on
# every run, whatever worker 0 or the machine's load are doing. It computes one story shard
# at a time (shards_in_flight=1), so that "shard 1 done, shard 3 mid-stage, nothing of shard 5"
# is a state it passes through; the rerun takes the default, many shards at once
# (test_schedule.py kills a run that has many in flight).
VICTIM = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from helpers import Recorder, recording_spec
from emopillars.api import run_pipeline
from emopillars.config import load_config
from emopillars.cluster.workers import with_scheduled_worker
from pathlib import Path
run_dir = Path({output!r})

def kill_in_story_shard_3():
    done = (run_dir / "manifest" / "rewrites" / "shard-00001.json").exists()
    journals = [p for p in (run_dir / "journal").glob("*/shard-00003.jsonl") if p.stat().st_size]
    if done and journals:
        os.kill(os.getpid(), signal.SIGKILL)

overrides = dict(engine="fake", corpus=Path({corpus!r}), output=run_dir, shard_size=1,
                 max_actors=2, num_workers=2, worker_index=1, shards_in_flight=1)
config = with_scheduled_worker(load_config(None, **overrides), os.environ)
recorder = Recorder(before_batch=kill_in_story_shard_3)
run_pipeline(config, recording_spec(config, recorder, batch_size=3))
"""


def test_a_killed_worker_is_rerun_and_the_dataset_is_unchanged(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "shared"
    flags = run_flags(corpus, run_dir)
    survivor = start_worker(flags, 0, 2)
    code = VICTIM.format(tests=str(TESTS), corpus=str(corpus), output=str(run_dir))
    victim = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert victim.returncode == -signal.SIGKILL, victim.stderr  # killed, not finished or failed
    survivor.communicate(timeout=120)
    assert survivor.returncode == 0

    # The kill landed where it should: story shard 1 through every stage, none of shard 5,
    # and shard 3 in the middle of a stage (answers journaled, no marker).
    finished = markers_of(run_dir)
    assert all((stage, 1) in finished for stage in STAGE_NAMES)
    assert not any((stage, 5) in finished for stage in STAGE_NAMES)
    journals = [p for p in (run_dir / "journal").glob("*/shard-00003.jsonl") if p.stat().st_size]
    assert journals
    assert all((journal.parent.name, 3) not in finished for journal in journals)

    # Assembly refuses, naming what is missing and whose it is: only worker 1's shards.
    assert main(["assemble", str(run_dir)]) == 1
    refusal = capsys.readouterr().err
    assert "rewrites/shard-00005 (worker 1 of 2)" in refusal
    assert "(worker 0 of 2)" not in refusal
    assert "workers with shards left: 1 (of 2)" in refusal
    assert not (run_dir / "dataset").exists()

    rerun = subprocess.run(
        [*RUN, *flags, "--num-workers", "2", "--worker-index", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert rerun.returncode == 0, rerun.stderr
    done = re.search(r"(\d+) stage shards computed, (\d+) already done", rerun.stdout)
    assert done is not None and int(done[2]) >= len(STAGE_NAMES)  # shard 1 was not redone
    # Nothing finished before the kill was rewritten, by either worker.
    assert all(markers_of(run_dir)[key] == text for key, text in finished.items())

    assert main(["assemble", str(run_dir)]) == 0
    assert dataset_contents(run_dir) == reference_dataset(corpus, tmp_path)
