"""`emopillars launch`: one real worker process per (fake) GPU id, each told its GPU through
CUDA_VISIBLE_DEVICES and logging to its own file; a failed worker is reported and nothing is
assembled; a rerun resumes and builds the single-worker dataset."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import dataset_contents, fake_config
from emopillars.api import run_pipeline
from emopillars.cli import main
from emopillars.cluster.launch import parse_gpus
from emopillars.run import lock as run_lock


def launch(corpus: Path, run_dir: Path, gpus: str, *extra: str) -> int:
    return main(["launch", "--gpus", gpus, "--engine", "fake", "--corpus", str(corpus),
                 "--output", str(run_dir), "--shard-size", "1", "--max-actors", "2", "--quiet",
                 *extra])  # fmt: skip


def reference_dataset(corpus: Path, tmp_path: Path) -> dict[str, object]:
    config = fake_config(corpus, tmp_path / "single-worker", shard_size=1)
    run_pipeline(config)
    return dataset_contents(config.output_dir)


def test_launch_runs_a_worker_per_gpu_then_assembles(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run folder"  # flags reach the workers as given, spaces and all
    assert launch(corpus, run_dir, "3,5") == 0
    printed = capsys.readouterr().out
    assert "worker 0 (GPU 3) done" in printed and "worker 1 (GPU 5) done" in printed
    assert "dataset context_less" in printed
    # Each worker saw its own GPU and took its own story shards (printed by the worker).
    first = (run_dir / "logs" / "worker-0.log").read_text()
    second = (run_dir / "logs" / "worker-1.log").read_text()
    assert "worker 0 of 2: story shards s with s % 2 == 0 (CUDA_VISIBLE_DEVICES=3)" in first
    assert "worker 1 of 2: story shards s with s % 2 == 1 (CUDA_VISIBLE_DEVICES=5)" in second
    assert "worker 0 of 2 done: story shards 0, 2, 4" in first
    assert dataset_contents(run_dir) == reference_dataset(corpus, tmp_path)


def test_workers_run_the_installed_package_from_any_working_folder(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Launched from a user's own ML repository, whose folders must not shadow emopillars.
    user_repo = tmp_path / "my-ml-repo"
    for package in ("pipeline", "emopillars"):
        for module in ("__init__.py", "cli.py", "__main__.py"):
            path = user_repo / package / module
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("raise SystemExit('the user folder was imported')\n")
    monkeypatch.chdir(user_repo)
    run_dir = tmp_path / "run"
    assert launch(corpus, run_dir, "0,1") == 0
    for index in (0, 1):
        assert "user folder" not in (run_dir / "logs" / f"worker-{index}.log").read_text()


def test_a_failed_worker_is_reported_and_a_rerun_finishes(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    # A folder where worker 1's first output file must go: writing it fails, for real.
    (run_dir / "actors" / "shard-00001.parquet").mkdir(parents=True)
    assert launch(corpus, run_dir, "0,1") == 1
    captured = capsys.readouterr()
    log = run_dir / "logs" / "worker-1.log"
    assert f"worker 1 (GPU 1) FAILED, exit code 1; log: {log}" in captured.out
    # The end of its log, shown with the failure.
    assert f"cannot open {run_dir / 'actors' / 'shard-00001.parquet'}: Is a directory" in (
        captured.out
    )
    assert "worker 0 (GPU 0) done" in captured.out
    assert "1 of 2 workers failed, so the dataset was not assembled" in captured.err
    assert not (run_dir / "dataset").exists()
    assert len(list((run_dir / "manifest" / "rewrites").glob("*.json"))) == 3  # worker 0's

    (run_dir / "actors" / "shard-00001.parquet").rmdir()
    assert launch(corpus, run_dir, "0,1") == 0
    # Worker 0 had nothing left to do; its log keeps both attempts.
    first = (run_dir / "logs" / "worker-0.log").read_text()
    assert first.count("=== ") == 2
    assert "0 stage shards computed, 15 already done" in first
    assert dataset_contents(run_dir) == reference_dataset(corpus, tmp_path)


@pytest.mark.parametrize(
    ("flag", "devices"),
    [("0,1,2,3", ["0", "1", "2", "3"]), ("0+1,2+3", ["0,1", "2,3"]), ("GPU-8f2c", ["GPU-8f2c"])],
)
def test_each_worker_gets_the_gpus_it_is_given(flag: str, devices: list[str]) -> None:
    assert parse_gpus(flag) == devices  # each worker's CUDA_VISIBLE_DEVICES


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--gpus", "0,0"], "names GPU 0 twice: two workers would share it"),
        (["--gpus", "0+1,1"], "names GPU 1 twice: two workers would share it"),
        (["--gpus", "2,0+0"], "names GPU 0 twice for one worker"),
        (["--gpus", "GPU-a1+GPU-a1"], "names GPU GPU-a1 twice for one worker"),
        (["--gpus", "0,,1"], "comma-separated list"),
        (["--gpus", "bad"], "comma-separated list"),
        (["--gpus", "-1"], "comma-separated list"),
        (["--gpus", "0,1", "--num-workers", "2"], "launch sets the workers itself"),
        (["--gpus", "0,1", "--executor", "ray"], "emopillars run --executor ray"),
    ],
)
def test_launch_refuses_before_starting_any_worker(
    extra: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    assert main(["launch", *extra, "--engine", "fake", "--output", str(run_dir)]) == 2
    assert message in capsys.readouterr().err
    assert not run_dir.exists()


def test_launch_into_a_folder_its_one_writer_holds_refuses_before_any_worker(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    # As a single-worker run holds it (flock locks belong to an open file, so this process's
    # second lock is refused as another process's would be).
    with run_lock.exclusive(run_dir, "emopillars run", create=True):
        assert launch(corpus, run_dir, "0,1") == 2
        [line] = capsys.readouterr().err.strip().splitlines()
        holder = f"emopillars run (pid {os.getpid()} on host {socket.gethostname()}"
        assert line.startswith(f"emopillars: {run_dir} is in use by {holder}")
    assert not (run_dir / "logs").exists()  # no worker was started
    assert not (run_dir / "run.json").exists()
    # A folder whose writer is gone (its lock free, its note left by a kill) is launched into.
    (run_dir / ".lock.json").write_text('{"command": "emopillars run", "host": "h", '
                                        '"pid": 1, "since": "then"}')  # fmt: skip
    assert launch(corpus, run_dir, "0,1") == 0
    assert dataset_contents(run_dir) == reference_dataset(corpus, tmp_path)


def test_launch_refuses_flags_that_run_does_not_know(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as usage:
        main(["launch", "--gpus", "0", "--no-such-flag", "--output", str(tmp_path / "x")])
    assert usage.value.code == 2
    assert not (tmp_path / "x").exists()


def test_assemble_of_a_folder_that_is_no_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["assemble", str(tmp_path)]) == 2
    assert "not an emopillars run folder" in capsys.readouterr().err


def worker_processes(run_dir: Path) -> list[int]:
    """The pids of live processes whose command line names the run folder."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            words = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue  # gone meanwhile
        if str(run_dir).encode() in words and b"--worker-index" in words:
            found.append(int(cmdline.parent.name))
    return found


def test_a_terminated_launch_stops_its_workers(corpus: Path, tmp_path: Path) -> None:
    # A cancelled job (scancel, docker stop) sends SIGTERM: no worker may go on holding a GPU.
    run_dir = tmp_path / "run"
    flags = ["--gpus", "0,1", "--engine", "fake", "--corpus", str(corpus), "--output",
             str(run_dir), "--shard-size", "1", "--max-actors", "2", "--fake-latency-s", "0.05",
             "--quiet"]  # fmt: skip
    launcher = subprocess.Popen(
        [sys.executable, "-m", "emopillars", "launch", *flags],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        # Each worker's banner: its command has started (and its SIGTERM handler with it).
        logs = [run_dir / "logs" / f"worker-{index}.log" for index in (0, 1)]
        while not all(log.exists() and "story shards s with" in log.read_text() for log in logs):
            assert launcher.poll() is None, launcher.communicate()
            assert time.monotonic() < deadline, "the workers never started"
            time.sleep(0.05)
        launcher.send_signal(signal.SIGTERM)
        _, err = launcher.communicate(timeout=120)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode == 143, err
    assert err.strip().splitlines()[-1].startswith("emopillars: stopped by SIGTERM; finished")
    assert worker_processes(run_dir) == []  # stopped, and waited for
    for index in (0, 1):  # each worker was told, and said so
        assert "stopped by SIGTERM" in (run_dir / "logs" / f"worker-{index}.log").read_text()
