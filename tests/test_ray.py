"""`--executor ray` on a local Ray instance (CPU, fake engine): one task per story shard,
through the same runner, resuming what a worker already did, then assembled by the driver
into the single-worker dataset. And without Ray installed, a clear message at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import dataset_contents, fake_config
from emopillars.api import run_pipeline
from emopillars.cli import main
from emopillars.stages import STAGE_NAMES


def test_ray_tasks_resume_a_worker_and_build_the_single_worker_dataset(
    corpus: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    # Worker 0 of 2 did story shards 0 and 2; Ray must skip them and do shard 1.
    run_pipeline(fake_config(corpus, run_dir, num_workers=2, worker_index=0))
    result = subprocess.run(
        [sys.executable, "-m", "emopillars", "run", "--engine", "fake", "--corpus", str(corpus),
         "--output", str(run_dir), "--shard-size", "2", "--max-actors", "2", "--quiet",
         "--executor", "ray"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Started a local Ray instance" in result.stderr
    stages = len(STAGE_NAMES)
    assert f"this run: {stages} stage shards computed, {2 * stages} already done" in result.stdout
    reference = fake_config(corpus, tmp_path / "single-worker")
    run_pipeline(reference)
    assert dataset_contents(run_dir) == dataset_contents(reference.output_dir)


def test_without_ray_the_executor_fails_at_once(
    corpus: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    out = tmp_path / "run"
    code = main(["run", "--engine", "fake", "--corpus", str(corpus), "--output", str(out),
                 "--executor", "ray"])  # fmt: skip
    assert code == 2
    assert "pip install 'emopillars[ray]'" in capsys.readouterr().err
    assert not (out / "plan.json").exists()
