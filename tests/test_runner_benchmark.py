"""benchmarks/runner_throughput.py: its profile (where a measured run's CPU goes, rerunnable)
and its streaming engine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
