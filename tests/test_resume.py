"""The centrepiece: a run killed with SIGKILL part-way resumes with nothing lost, nothing
duplicated, and no finished shard or journaled answer sent to the engine again."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from conftest import fake_config
from emopillars.api import run_pipeline
from emopillars.config import RunConfig
from emopillars.engines import Result
from emopillars.run.journal import Journal, journal_line
from emopillars.stages import STAGE_NAMES
from helpers import Interrupted, Recorder, recording_spec

TESTS = Path(__file__).parent

# The victim: the same config in a child process, with a sequential engine (batches of 3
# requests, each journaled) that kills its own process right before the first batch that finds
# two story shards through every stage and answers of the current shard journaled: the kill
# lands inside a shard, never between two. The child runs one thread on the deterministic fake
# engine, so this is the same batch on every run, whatever the machine's load.
VICTIM = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from conftest import fake_config
from helpers import Recorder, recording_spec
from emopillars.api import run_pipeline
from emopillars.config import RunConfig
from pathlib import Path
run_dir = Path({output!r})

def kill_mid_shard():
    done = list((run_dir / "manifest" / "rewrites").glob("shard-*.json"))
    journals = [p for p in (run_dir / "journal").glob("*/*.jsonl") if p.stat().st_size]
    if len(done) >= 2 and journals:
        os.kill(os.getpid(), signal.SIGKILL)

config = fake_config(Path({corpus!r}), run_dir, shard_size=1)
run_pipeline(config, recording_spec(config, Recorder(before_batch=kill_mid_shard), batch_size=3))
"""


def _dataset_tables(run_dir: Path) -> dict[str, list[dict[str, object]]]:
    files = sorted((run_dir / "dataset").rglob("*.parquet"))
    return {str(f.relative_to(run_dir)): pq.read_table(f).to_pylist() for f in files}


def test_killed_run_resumes_exactly(corpus: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "killed"
    code = VICTIM.format(tests=str(TESTS), corpus=str(corpus), output=str(run_dir))
    victim = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert victim.returncode == -signal.SIGKILL, victim.stderr  # killed, not finished or failed

    # The kill landed mid-run and mid-shard: two story shards finished every stage, and the
    # shard being computed has answers journaled but no marker.
    before = Interrupted.read(run_dir)
    assert len(list((run_dir / "manifest" / "rewrites").glob("shard-*.json"))) == 2
    assert before.markers and before.journaled
    journals = [p for p in (run_dir / "journal").glob("*/*.jsonl") if p.stat().st_size]
    assert journals
    for journal in journals:
        assert not (run_dir / "manifest" / journal.parent.name / f"{journal.stem}.json").exists()

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


def test_a_journal_line_is_the_json_of_its_answer(tmp_path: Path) -> None:
    results = [
        Result('{"a": "é “x” \\\\ \t\x01"}', "stop", 12, 3),
        Result("", "error", 0, 0, error='server said "no"\n'),
        Result("partial", "length", 7, 64),
    ]
    for number, result in enumerate(results):
        key = f"key-{number}"
        line = journal_line(key, result)
        assert line == json.dumps({"key": key, "result": result.__dict__}) + "\n"
    journal = Journal(tmp_path / "journal.jsonl")
    journal.record([(f"key-{n}", result) for n, result in enumerate(results)])
    journal.close()
    assert Journal(tmp_path / "journal.jsonl").answers == journal.answers


def test_a_journal_opens_its_file_once_for_all_its_arrivals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A streaming engine's answers arrive one at a time: each is written at once, through the
    # file opened for the first.
    opened: list[Path] = []
    real_open = Path.open

    def counting_open(path: Path, *args: Any, **kwargs: Any) -> Any:
        opened.append(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(Path, "open", counting_open)
    path = tmp_path / "journal" / "labels" / "shard-00000.jsonl"
    journal = Journal(path)
    for number in range(3):
        journal.record([(f"key-{number}", Result("{}", "stop", 1, 1))])
        with open(path, encoding="utf-8") as written:  # not Path.open: it counts those
            assert len(written.read().splitlines()) == number + 1  # on disk before the next
    assert opened == [path]
    journal.close()
    journal.record([("key-3", Result("{}", "stop", 1, 1))])  # after close: opened again
    journal.close()
    assert opened == [path, path]
    assert set(Journal(path).answers) == {f"key-{n}" for n in range(4)}
    journal.discard()
    assert not path.exists()


def test_a_journal_fsyncs_at_most_once_per_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    monkeypatch.setattr("emopillars.run.journal.os.fsync", synced.append)
    clock = iter([0.0, 0.2, 0.5, 1.3, 1.4, 2.5, 3.0])  # creations, one reading per record
    monkeypatch.setattr("emopillars.run.journal.time.monotonic", lambda: next(clock))
    journal = Journal(tmp_path / "journal.jsonl", sync_seconds=1.0)
    for number in range(5):
        journal.record([(f"key-{number}", Result("{}", "stop", 1, 1))])
    journal.close()
    # Every answer is written at once; fsyncs only at 1.3 s and 2.5 s.
    assert len(synced) == 2
    assert set(Journal(tmp_path / "journal.jsonl").answers) == {f"key-{n}" for n in range(5)}


def test_a_resumed_run_keeps_the_shard_size_it_was_started_with(
    corpus: Path, tmp_path: Path
) -> None:
    """Run folders started under another shard size (an older default, or a flag left off on
    resuming) are not sharded anew, which would pay the engine again for every kept answer."""
    run_dir = tmp_path / "run"
    run_pipeline(fake_config(corpus, run_dir, shard_size=2))
    plan = json.loads((run_dir / "plan.json").read_text())

    without_size = {"corpus": corpus, "output": run_dir, "engine": "fake", "max_actors": 2}
    resumed = RunConfig.model_validate(without_size)
    assert resumed.shard_size == 16  # the default, which would make one shard of the corpus
    recorder = Recorder()
    result = run_pipeline(resumed, recording_spec(resumed, recorder))
    assert recorder.loads == 0 and result.shards_computed == 0  # nothing asked again
    assert json.loads((run_dir / "plan.json").read_text()) == plan
    assert json.loads((run_dir / "run.json").read_text())["config"]["shard_size"] == 2

    # A size given explicitly wins: the run is sharded anew.
    recorder = Recorder()
    explicit = RunConfig.model_validate({**without_size, "shard_size": 3})
    run_pipeline(explicit, recording_spec(explicit, recorder))
    assert recorder.loads == 1
    assert json.loads((run_dir / "run.json").read_text())["config"]["shard_size"] == 3

    # A fresh folder takes the default.
    fresh = RunConfig.model_validate({**without_size, "output": tmp_path / "fresh"})
    run_pipeline(fresh)
    assert json.loads((tmp_path / "fresh" / "run.json").read_text())["config"]["shard_size"] == 16
