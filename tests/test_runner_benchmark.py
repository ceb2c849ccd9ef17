"""benchmarks/runner_throughput.py: its profile (where a measured run's CPU goes, rerunnable)
and its streaming engine; benchmarks/runner_instructions.py, the same workload counted in
instructions."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "runner_throughput.py"


def test_the_profile_names_the_costliest_functions_and_each_source_files_share(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--stories", "3", "--repeat", "1", "--profile", "5",
         "--json"],
        capture_output=True, text=True, check=True, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    profile = json.loads(done.stdout)["profile"]
    functions, files = profile["functions"], profile["files"]
    assert len(functions) == 5
    shares = [row["share"] for row in functions]
    assert shares == sorted(shares, reverse=True) and 0 < shares[-1] <= shares[0] <= 1
    assert all(row["calls"] >= 1 and row["function"] for row in functions)
    # Our files by module, the libraries' by package; the shares are of one total.
    assert any(source.startswith("emopillars/run/") for source in files)
    assert all(0.01 <= share <= 1 for share in files.values())
    assert sum(files.values()) <= 1 + 1e-9
    assert profile["seconds"] > 0


def test_without_profile_the_figures_carry_none(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--stories", "2", "--repeat", "1", "--json"],
        capture_output=True, text=True, check=True, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert "profile" not in json.loads(done.stdout)


def test_a_streaming_engine_does_the_same_work_answer_by_answer(tmp_path: Path) -> None:
    def figures(*options: str) -> dict[str, object]:
        done = subprocess.run(
            [sys.executable, str(SCRIPT), "--stories", "2", "--repeat", "1", "--json", *options],
            capture_output=True, text=True, check=True, cwd=tmp_path, timeout=300,
        )  # fmt: skip
        result: dict[str, object] = json.loads(done.stdout)
        return result

    batched, streamed = figures(), figures("--arrivals", "1")
    assert (batched["arrivals"], streamed["arrivals"]) == (None, 1)
    for name in ("utterance_records", "requests"):
        assert streamed[name] == batched[name]
    assert isinstance(batched["utterance_records"], int) and batched["utterance_records"] > 0
    refused = subprocess.run(
        [sys.executable, str(SCRIPT), "--arrivals", "0"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert refused.returncode == 2 and "--arrivals must be at least 1" in refused.stderr


INSTRUCTIONS = SCRIPT.with_name("runner_instructions.py")


def test_a_counted_process_does_the_workload_of_runner_throughput(tmp_path: Path) -> None:
    # What each process under cachegrind runs: the same records and requests as the timed runs.
    counted = subprocess.run(
        [sys.executable, str(INSTRUCTIONS), "--stories", "2", "--measured-runs", "2"],
        capture_output=True, text=True, check=True, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    timed = subprocess.run(
        [sys.executable, str(SCRIPT), "--stories", "2", "--repeat", "1", "--json"],
        capture_output=True, text=True, check=True, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    sizes, figures = json.loads(counted.stdout), json.loads(timed.stdout)
    assert sizes == {"records": figures["utterance_records"], "requests": figures["requests"]}


def test_without_valgrind_the_count_says_what_to_install(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(INSTRUCTIONS), "--stories", "2"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
        env={**os.environ, "PATH": str(tmp_path)},
    )  # fmt: skip
    assert done.returncode != 0
    assert "valgrind is not installed" in done.stderr


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_instructions_are_counted_per_run_record_and_request(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(INSTRUCTIONS), "--stories", "2", "--json"],
        capture_output=True, text=True, check=True, cwd=tmp_path, timeout=600,
    )  # fmt: skip
    figures = json.loads(done.stdout)
    per_run, records, requests = (
        figures[name] for name in ("instructions_per_run", "utterance_records", "requests")
    )
    # One measured run of a tiny corpus: tens of millions of instructions, not the hundreds of
    # millions of the interpreter's start and the recording run, which the difference drops.
    assert 10_000_000 < per_run < 1_000_000_000
    assert records > 0 and requests > records / 10
    assert figures["instructions_per_record"] == round(per_run / records)
    assert figures["instructions_per_request"] == round(per_run / requests)
