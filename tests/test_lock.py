"""One writer per run folder: a second run, an assemble or a publish stops at once (exit 2)
naming the process that writes the folder; workers of a multi-worker run share a folder but
never a story shard; a killed holder's locks are taken over; the holder sweeps what
interrupted writes left. Real processes, with a holder that blocks where the test wants it."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import dataset_contents, fake_config
from emopillars.api import run_pipeline
from emopillars.cli import main
from emopillars.run import lock as run_lock
from emopillars.run.layout import RunLayout
from emopillars.run.lockfile import NotedLock
from emopillars.run.sweep import sweep_temporaries
from emopillars.stages import STAGE_NAMES

TESTS = Path(__file__).parent
RUN = [sys.executable, "-m", "emopillars", "run"]

# The holder: a run (or a worker of two) in a child process whose engine, once story shard 0
# has been through the first stage, signals `ready` and then blocks until it is killed. So it
# holds its locks, mid-shard, for as long as the test needs, whatever the machine's load.
HOLDER = """
import sys, time
sys.path.insert(0, {tests!r})
from conftest import fake_config
from helpers import Recorder, recording_spec
from emopillars.api import run_pipeline
from pathlib import Path
run_dir, ready = Path({output!r}), Path({ready!r})

def block_in_story_shard_0():
    if (run_dir / "manifest" / "actors" / "shard-00000.json").exists():
        ready.touch()
        while True:
            time.sleep(0.1)

config = fake_config(Path({corpus!r}), run_dir, shard_size=1, **{execution!r})
run_pipeline(config, recording_spec(config, Recorder(before_batch=block_in_story_shard_0), 3))
"""


def run_flags(corpus: Path, run_dir: Path) -> list[str]:
    """`run` flags of the same config as `fake_config(corpus, run_dir, shard_size=1)`."""
    return ["--engine", "fake", "--corpus", str(corpus), "--output", str(run_dir),
            "--shard-size", "1", "--max-actors", "2", "--quiet"]  # fmt: skip


def start_holder(corpus: Path, run_dir: Path, **execution: int) -> subprocess.Popen[str]:
    ready = run_dir.parent / f"{run_dir.name}.ready"
    code = HOLDER.format(
        tests=str(TESTS),
        corpus=str(corpus),
        output=str(run_dir),
        ready=str(ready),
        execution=execution,
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while not ready.exists():
        assert holder.poll() is None, holder.communicate()[1]
        assert time.monotonic() < deadline, "the holder never got to story shard 0"
        time.sleep(0.05)
    return holder


@pytest.fixture
def holders() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:  # a failed test must not leave a blocked holder behind
        if process.poll() is None:
            process.kill()
        process.communicate()


def kill(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL


def files_of(run_dir: Path) -> dict[str, bytes]:
    """The folder's files, but the lock files and notes, which any command may touch."""
    return {
        str(path.relative_to(run_dir)): path.read_bytes()
        for path in sorted(run_dir.rglob("*"))
        if path.is_file() and "locks" not in path.parts and not path.name.startswith(".lock")
    }


def dataset_bytes(run_dir: Path) -> dict[str, bytes]:
    folder = run_dir / "dataset"
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_one_writer_refuses_others_and_is_taken_over_after_a_kill(
    corpus: Path,
    tmp_path: Path,
    holders: list[subprocess.Popen[str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    run_dir = tmp_path / "run"
    holder = start_holder(corpus, run_dir)
    holders.append(holder)
    names = f"pid {holder.pid} on host {socket.gethostname()}, since "
    before = files_of(run_dir)

    # A second run, with another seed, into the same folder: refused at once, in one line.
    began = time.monotonic()
    second = subprocess.run(
        [*RUN, *run_flags(corpus, run_dir), "--seed", "7"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert second.returncode == 2, second.stderr
    assert time.monotonic() - began < 60  # no waiting for the holder (process start aside)
    [line] = second.stderr.strip().splitlines()
    assert line.startswith(f"emopillars: {run_dir} is in use by emopillars run ({names}")
    assert "wait for it to finish (or stop it), then run this command again" in line
    # Nor can a worker of a multi-worker run join, or `assemble` and `publish` read.
    worker = subprocess.run(
        [*RUN, *run_flags(corpus, run_dir), "--num-workers", "2", "--worker-index", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert worker.returncode == 2 and names in worker.stderr, worker.stderr
    assert main(["assemble", str(run_dir)]) == 2
    assert names in capsys.readouterr().err
    staging = tmp_path / "staging"
    assert main(["publish", str(run_dir), "--repo-id", "me/data", "--dry-run", str(staging)]) == 2
    assert names in capsys.readouterr().err
    assert not staging.exists()
    # Reading commands neither take the lock nor fail because of it; status names the writer.
    assert main(["status", str(run_dir)]) == 0
    assert f"writing now: emopillars run ({names}" in capsys.readouterr().out
    assert main(["status", str(run_dir), "--json"]) == 0
    [writer] = json.loads(capsys.readouterr().out)["writers"]
    assert writer["command"] == "emopillars run" and writer["pid"] == holder.pid
    assert main(["report", str(run_dir)]) == 0
    capsys.readouterr()
    assert files_of(run_dir) == before  # none of them wrote anything

    # What interrupted writes leave behind, for the next holder to sweep.
    stale = [
        run_dir / "labels" / ".shard-00000.parquet.k3j4h5g6.tmp",
        run_dir / ".plan.json.a1b2c3d4.tmp",
        run_dir / "dataset.partial" / "context_less" / "train-00000-of-00001.parquet",
    ]
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half a file")

    kill(holder)
    assert str(holder.pid) in (run_dir / ".lock.json").read_text()  # a note outlives a kill...
    rerun = subprocess.run(
        [*RUN, *run_flags(corpus, run_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert rerun.returncode == 0, rerun.stderr  # ...but not the lock: the kernel freed it
    assert not any(path.exists() for path in stale)
    assert not (run_dir / "dataset.partial").exists()
    assert not list(run_dir.rglob(".*.tmp"))
    assert not (run_dir / ".lock.json").exists()  # a holder that finishes withdraws its note
    assert main(["status", str(run_dir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["writers"] == []

    reference = fake_config(corpus, tmp_path / "reference", shard_size=1)
    run_pipeline(reference)
    assert dataset_bytes(run_dir) == dataset_bytes(reference.output_dir)


def test_workers_share_a_folder_but_never_a_story_shard(
    corpus: Path,
    tmp_path: Path,
    holders: list[subprocess.Popen[str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    run_dir = tmp_path / "shared"
    # Worker 0 of 2, blocked inside story shard 0 with its lease held.
    first = start_holder(corpus, run_dir, num_workers=2, worker_index=0)
    holders.append(first)
    names = f"pid {first.pid} on host {socket.gethostname()}"
    lease = RunLayout(run_dir).shard_lease(0)
    assert f'"pid": {first.pid}' in lease.with_name(lease.name + ".json").read_text()

    # While a worker is at work, no single writer gets in: not a run, not `assemble`.
    assert main(["run", *run_flags(corpus, run_dir)]) == 2
    refused = capsys.readouterr().err
    assert "a worker of a multi-worker run, such as emopillars run worker 0 of 2" in refused
    assert names in refused
    assert main(["assemble", str(run_dir)]) == 2
    assert names in capsys.readouterr().err
    assert main(["status", str(run_dir)]) == 0  # which names the workers at work
    assert f"writing now: emopillars run worker 0 of 2 ({names}" in capsys.readouterr().out

    # A second process given the same worker index waits for story shard 0's lease...
    second = subprocess.Popen(
        [*RUN, *run_flags(corpus, run_dir), "--num-workers", "2", "--worker-index", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    holders.append(second)
    errors: list[str] = []
    waiting = threading.Event()

    def read_errors() -> None:
        assert second.stderr is not None
        for text in second.stderr:
            errors.append(text)
            if "story shard 0 is being computed by" in text:
                waiting.set()

    reader = threading.Thread(target=read_errors, daemon=True)
    reader.start()
    assert waiting.wait(timeout=120), "".join(errors)
    assert names in "".join(errors)
    shard_0 = {k: v for k, v in files_of(run_dir).items() if "00000" in k}
    time.sleep(1.0)  # it stays put: nothing of story shard 0 changes while the lease is held
    assert {k: v for k, v in files_of(run_dir).items() if "00000" in k} == shard_0

    # ...and takes the lease over when its holder is killed, resuming the shard.
    kill(first)
    assert second.stdout is not None
    out = second.stdout.read()  # the reader thread has stderr: no communicate()
    second.wait(timeout=300)
    reader.join(timeout=10)
    assert second.returncode == 0, "".join(errors)
    assert "worker 0 of 2 done: story shards 0, 2, 4" in out
    run_pipeline(fake_config(corpus, run_dir, shard_size=1, num_workers=2, worker_index=1))

    # No presence or lease is left held: the folder's one writer gets in, and the dataset is
    # the single-worker one.
    assert main(["assemble", str(run_dir)]) == 0
    reference = fake_config(corpus, tmp_path / "reference", shard_size=1)
    run_pipeline(reference)
    assert dataset_contents(run_dir) == dataset_contents(reference.output_dir)
    assert not list((run_dir / "locks" / "workers").glob("*.lock"))  # dead ones swept
    for stage in STAGE_NAMES:
        assert len(list((run_dir / "manifest" / stage).glob("shard-*.json"))) == 6


def test_two_locks_on_one_path_exclude_each_other_in_one_process(tmp_path: Path) -> None:
    first, second = NotedLock(tmp_path / "x.lock"), NotedLock(tmp_path / "x.lock")
    assert first.try_acquire()
    assert not second.try_acquire()
    first.release()
    assert second.try_acquire()
    second.release()


def test_the_sweep_removes_only_temporaries(tmp_path: Path) -> None:
    layout = RunLayout(tmp_path)
    kept = [tmp_path / "labels" / "shard-00000.parquet", tmp_path / ".lock", tmp_path / "x.tmp"]
    swept = [tmp_path / "labels" / ".shard-00000.parquet.abc.tmp", tmp_path / ".run.json.1.tmp"]
    for path in kept + swept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    (layout.dataset_staging / "context_less").mkdir(parents=True)
    assert sweep_temporaries(layout) == 3
    assert all(path.exists() for path in kept)
    assert not any(path.exists() for path in swept) and not layout.dataset_staging.exists()


def test_a_folder_that_cannot_be_locked_from_here_is_read_without_a_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A read-only mount: the lock file cannot be created, and nobody can write through it.
    def read_only(self: NotedLock, wait: float = 0.0) -> bool:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self.path))

    monkeypatch.setattr(NotedLock, "try_acquire", read_only)
    with run_lock.exclusive(tmp_path, "emopillars publish"):
        pass
    with run_lock.joined(tmp_path, "emopillars run worker 0 of 2"):
        pass
    # Nor can who writes it be told from here: status says so rather than guess.
    (tmp_path / ".lock").touch()
    assert run_lock.writers(tmp_path) is None
    run_lock.check_joinable(tmp_path)  # a launch goes on: its workers read it the same way


@pytest.mark.parametrize(
    "command",
    [["assemble"], ["publish", "--repo-id", "alice/x", "--dry-run", "staging"]],
    ids=["assemble", "publish"],
)
def test_a_command_refused_on_a_folder_that_is_no_run_leaves_no_lock_in_it(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "not-a-run"
    folder.mkdir()
    argv = [command[0], str(folder), *command[1:]]
    assert main([arg if arg != "staging" else str(tmp_path / arg) for arg in argv]) == 2
    assert "is not an emopillars run folder" in capsys.readouterr().err
    assert list(folder.iterdir()) == []
