"""The garbage collector's thresholds during a run (run/garbage.py)."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import fake_config
from emopillars.api import run_pipeline
from emopillars.run.garbage import GEN0_THRESHOLD, collecting_less
from helpers import Recorder, recording_spec


@pytest.fixture
def thresholds() -> Iterator[tuple[int, int, int]]:
    before = gc.get_threshold()
    yield before
    gc.set_threshold(*before)


def test_a_run_collects_less_often_and_puts_the_thresholds_back(
    corpus: Path, tmp_path: Path, thresholds: tuple[int, int, int]
) -> None:
    gc.set_threshold(700, 10, 10)  # CPython's defaults
    seen: list[tuple[int, int, int]] = []
    recorder = Recorder(before_batch=lambda: seen.append(gc.get_threshold()))
    config = fake_config(corpus, tmp_path / "run")
    run_pipeline(config, recording_spec(config, recorder))
    assert seen and set(seen) == {(GEN0_THRESHOLD, 10, 10)}
    assert gc.get_threshold() == (700, 10, 10)


def test_a_higher_threshold_is_kept_and_a_failure_restores_it(
    thresholds: tuple[int, int, int],
) -> None:
    gc.set_threshold(GEN0_THRESHOLD * 5, 3, 4)
    with collecting_less():
        assert gc.get_threshold() == (GEN0_THRESHOLD * 5, 3, 4)  # never lowered
    gc.set_threshold(100, 3, 4)
    with pytest.raises(RuntimeError), collecting_less():
        assert gc.get_threshold() == (GEN0_THRESHOLD, 3, 4)
        raise RuntimeError("a failed run")
    assert gc.get_threshold() == (100, 3, 4)


def test_the_throughput_benchmark_measures_the_setting_against_another(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "runner_throughput.py"
    done = subprocess.run(
        [sys.executable, str(script), "--stories", "3", "--repeat", "2", "--json",
         "--against-gen0", "700"],
        capture_output=True, text=True, check=True, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    figures = json.loads(done.stdout)
    assert figures["gen0_threshold"] == GEN0_THRESHOLD
    assert figures["records_per_cpu_second"] > 0 and figures["records_per_second"] > 0
    assert figures["against_gen0"]["gen0_threshold"] == 700
    assert figures["against_gen0"]["records_per_cpu_second"] > 0
