"""The centrepiece: a run killed with SIGKILL part-way resumes with nothing lost, nothing
duplicated, and no finished shard or journaled answer sent to the engine again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
from conftest import fake_config
from helpers import Interrupted, Recorder, recording_spec

from pipeline.api import run_pipeline
from pipeline.stages import STAGE_NAMES

TESTS = Path(__file__).parent

# The victim: the same config in a child process, with a sequential engine (batches of 3
# requests, each journaled) that is slow enough to be killed in the middle of a shard.
VICTIM = """
import sys
sys.path.insert(0, {tests!r})
from conftest import fake_config
from helpers import Recorder, recording_spec
from pipeline.api import run_pipeline
from pathlib import Path
config = fake_config(Path({corpus!r}), Path({output!r}), shard_size=1, fake_latency_s=0.004)
run_pipeline(config, recording_spec(config, Recorder(), batch_size=3))
"""


def _dataset_tables(run_dir: Path) -> dict[str, list[dict[str, object]]]:
    files = sorted((run_dir / "dataset").rglob("*.parquet"))
    return {str(f.relative_to(run_dir)): pq.read_table(f).to_pylist() for f in files}


def _kill_when_mid_run(process: subprocess.Popen[bytes], run_dir: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = list((run_dir / "manifest" / "rewrites").glob("shard-*.json"))
        journals = [p for p in (run_dir / "journal").glob("*/*.jsonl") if p.stat().st_size]
        if len(done) >= 2 and journals:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            return
        if process.poll() is not None:
            raise AssertionError("the run finished before it could be killed; slow it down")
        time.sleep(0.01)
    process.kill()
    raise AssertionError("the run made no progress within 60 s")


def test_killed_run_resumes_exactly(corpus: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "killed"
    code = VICTIM.format(tests=str(TESTS), corpus=str(corpus), output=str(run_dir))
    process = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.DEVNULL)
    _kill_when_mid_run(process, run_dir)
    assert process.returncode == -signal.SIGKILL

    before = Interrupted.read(run_dir)
    assert before.markers and before.journaled

    config = fake_config(corpus, run_dir, shard_size=1)
    recorder = Recorder()
    run_pipeline(config, recording_spec(config, recorder, batch_size=3))

    # No finished request paid twice: neither finished shards' nor journaled answers.
    assert not recorder.keys & before.done_keys
    assert not recorder.keys & before.journaled
    # Finished shards were not rewritten.
    assert before.untouched()
    # The manifest is complete and no journal is left behind.
    for stage in STAGE_NAMES:
        assert len(list((run_dir / "manifest" / stage).glob("shard-*.json"))) == 6
    assert not list((run_dir / "journal").glob("*/*.jsonl"))

    # The dataset is identical to an uninterrupted run's: same ids, no duplicates, same rows.
    reference = fake_config(corpus, tmp_path / "reference", shard_size=1)
    run_pipeline(reference)
    resumed, uninterrupted = _dataset_tables(run_dir), _dataset_tables(reference.output_dir)
    assert resumed == uninterrupted
    for config_name in ("context_less", "context_aware"):
        ids = [row["id"] for name, rows in resumed.items() if config_name in name for row in rows]
        assert ids and len(ids) == len(set(ids))
    assert (run_dir / "dataset" / "README.md").read_text() == (
        reference.output_dir / "dataset" / "README.md"
    ).read_text()
