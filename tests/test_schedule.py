"""The schedule (run/schedule.py): many story shards in flight never change the data, lose
nothing to a kill, and pay no request twice; request keys stay what they always were."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from conftest import fake_config
from emopillars.api import run_pipeline
from emopillars.engines import Message, Request, Result, Sampling
from emopillars.engines.base import RequestMaker
from emopillars.run.schedule import BatchStream, Need, Scheduler, Task
from emopillars.stages import STAGE_NAMES
from helpers import Interrupted, Recorder, recording_spec

TESTS = Path(__file__).parent

# A key computed by the code before request keys were built from a cached static part: keys
# name kept answers and enter fingerprints, so a changed key would recompute every run folder.
GOLDEN_KEY = "fa3350a8926bc686b0a0cfbf"


def golden_request_parts() -> tuple[tuple[Message, ...], dict[str, object], Sampling, str]:
    messages = (Message("user", 'Story: Ünïcode “quotes” and "escapes"\nline two'),)
    schema: dict[str, object] = {
        "type": "object",
        "properties": {"b": {"type": "string"}, "a": {"enum": ["joy", "é"]}},
    }
    return messages, schema, Sampling(max_tokens=120, temperature=0.7, seed=2), "f00dfeed"


def test_request_keys_are_unchanged_and_the_fast_path_agrees() -> None:
    messages, schema, sampling, engine = golden_request_parts()
    assert Request(messages, schema, sampling, engine).key == GOLDEN_KEY
    made = RequestMaker(schema, sampling, engine).make_prompt([messages[0].content])
    assert made.key == GOLDEN_KEY
    assert made == Request(messages, schema, sampling, engine)


def test_a_prompt_keyed_piece_by_piece_gets_the_key_of_the_whole_message() -> None:
    _, schema, sampling, engine = golden_request_parts()
    maker = RequestMaker(schema, sampling, engine)
    story = 'Ünïcode “quotes”, "escapes", a tab\t, \x01 and \\ backslashes.\n' * 40
    for pieces in (
        ["Story: ", story, "\nWho speaks? ", "Anna", "\nAnswer in JSON."],
        [story, "", story[:7]],  # a long piece twice: the second is the kept one
        ["only one piece"],
        [],
    ):
        made = maker.make_prompt(pieces)
        whole = Request((Message("user", "".join(pieces)),), schema, sampling, engine)
        assert (made.key, made.messages) == (whole.key, whole.messages)


def test_kept_prompt_starts_never_change_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Prompts that share their start (a template's text, a story) in any order, with long
    pieces of their own after it, and caches small enough to drop entries: each key is the
    key of the whole message."""
    from emopillars.engines import base

    monkeypatch.setattr(base, "_PREFIXES_KEPT", 3)
    monkeypatch.setattr(base, "_LONG_TEXTS_KEPT", 5)
    monkeypatch.setattr(base, "_LONG_TEXTS", {})
    _, schema, sampling, engine = golden_request_parts()
    maker = RequestMaker(schema, sampling, engine)
    rng = random.Random(3)
    template = "Read the story below and answer in JSON. " * 4
    stories = [f'Story {n}: “{"Ünïcode" * n}” and "escapes"\t.\n' * 20 for n in range(4)]
    for _ in range(300):
        own = "".join(rng.choices('ab "\n\\é“', k=rng.choice([3, 200])))
        pieces = [template, rng.choice(["T1", "T2"]), rng.choice(stories), "\nSays: ", own]
        pieces = pieces[: rng.randrange(1, len(pieces) + 1)]
        made = maker.make_prompt(pieces)
        whole = Request((Message("user", "".join(pieces)),), schema, sampling, engine)
        assert (made.key, made.messages) == (whole.key, whole.messages)


def files_of(run_dir: Path) -> dict[str, bytes]:
    """Every data file of a run: stage shards, rejects, kept answers and the dataset."""
    names = [*STAGE_NAMES, "dataset"]
    return {
        str(path.relative_to(run_dir)): path.read_bytes()
        for name in names
        for path in sorted((run_dir / name).rglob("*.parquet"))
    }


def test_a_window_of_one_and_a_large_window_write_byte_identical_data(
    corpus: Path, tmp_path: Path
) -> None:
    # Broken answers make retries, which join the stream with other shards' requests.
    common = {"shard_size": 1, "fake_fault_rate": 0.2}
    one = fake_config(corpus, tmp_path / "one", shards_in_flight=1, **common)
    wide = fake_config(corpus, tmp_path / "wide", shards_in_flight=64, **common)
    narrow = fake_config(corpus, tmp_path / "narrow", max_in_flight=2, **common)
    recorders = [Recorder(), Recorder(), Recorder()]
    for config, recorder in zip((one, wide, narrow), recorders, strict=True):
        run_pipeline(config, recording_spec(config, recorder))
    reference = files_of(one.output_dir)
    assert reference and any("dataset" in name for name in reference)
    assert files_of(wide.output_dir) == reference
    assert files_of(narrow.output_dir) == reference
    # The same requests, each sent once, whatever the schedule; the wide window merges them
    # into fewer calls.
    sent = [sorted(request.key for request in recorder.sent) for recorder in recorders]
    assert sent[0] == sent[1] == sent[2]
    assert len(sent[0]) == len(set(sent[0]))
    assert recorders[1].batches < recorders[0].batches


class CountingEngine:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def generate(self, requests: Sequence[Request]) -> list[Result]:
        self.sent.extend(request.key for request in requests)
        return [Result(request.key, "stop", 1, 1) for request in requests]

    def close(self) -> None:
        pass


def test_a_request_two_tasks_wait_for_is_answered_once_for_both() -> None:
    maker = RequestMaker({"type": "object"}, Sampling(max_tokens=16), "engine")
    same, other = maker.make_prompt(["same"]), maker.make_prompt(["b"])
    journaled: list[list[str]] = []
    received: list[tuple[dict[str, Result], int]] = []

    def task(requests: list[Request]) -> Task:
        need = Need(requests, lambda items: journaled.append([key for key, _ in items]))
        answers = yield need
        received.append((answers, need.shared))

    engine = CountingEngine()
    scheduler = Scheduler(lambda: BatchStream(engine, None), max_in_flight=8, window=8)
    scheduler.run([task([same]), task([same, other])])
    assert sorted(engine.sent) == sorted([same.key, other.key])
    assert [sorted(answers) for answers, _ in received] == [
        [same.key],
        sorted([same.key, other.key]),
    ]
    assert [shared for _, shared in received] == [0, 1]
    # Each task journals every answer it uses, its own and the shared one.
    assert sorted(key for keys in journaled for key in keys) == sorted(
        [same.key, same.key, other.key]
    )


# The victim: a run with many story shards in flight (the default window) on an engine that
# answers 3 requests per call, killed with SIGKILL right before the first call that finds a
# story shard finished through every stage while answers of two other shards sit journaled:
# several shards are mid-stage at once.
VICTIM = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from conftest import fake_config
from helpers import Recorder, recording_spec
from emopillars.api import run_pipeline
from pathlib import Path

import pytest
run_dir = Path({output!r})

def kill_mid_window():
    done = list((run_dir / "manifest" / "rewrites").glob("shard-*.json"))
    journaled = {{p.stem for p in (run_dir / "journal").glob("*/*.jsonl") if p.stat().st_size}}
    if done and len(journaled) >= 2:
        os.kill(os.getpid(), signal.SIGKILL)

config = fake_config(Path({corpus!r}), run_dir, shard_size=1, fake_fault_rate=0.2)
run_pipeline(config, recording_spec(config, Recorder(before_batch=kill_mid_window), batch_size=3))
"""


def test_a_run_killed_with_many_shards_in_flight_resumes_exactly(
    corpus: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "killed"
    code = VICTIM.format(tests=str(TESTS), corpus=str(corpus), output=str(run_dir))
    victim = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert victim.returncode == -signal.SIGKILL, victim.stderr
    before = Interrupted.read(run_dir)
    journaled_shards = {p.stem for p in (run_dir / "journal").glob("*/*.jsonl")}
    assert before.journaled and len(journaled_shards) >= 2

    config = fake_config(corpus, run_dir, shard_size=1, fake_fault_rate=0.2)
    recorder = Recorder()
    run_pipeline(config, recording_spec(config, recorder, batch_size=3))
    assert not recorder.keys & before.done_keys  # finished shards' requests
    assert not recorder.keys & before.journaled  # answers journaled before the kill
    assert len(recorder.sent) == len(recorder.keys)  # and nothing twice in the resumed run
    assert before.untouched()
    assert not list((run_dir / "journal").glob("*/*.jsonl"))

    reference = fake_config(corpus, tmp_path / "reference", shard_size=1, fake_fault_rate=0.2)
    run_pipeline(reference)
    assert files_of(run_dir) == files_of(reference.output_dir)
