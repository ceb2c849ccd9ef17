"""The runner: rejects accounting, fingerprints, the journal, and failures that keep work."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import fake_config
from emopillars.api import run_pipeline
from emopillars.engines import engine_spec
from emopillars.resources import prompts_dir
from emopillars.run.journal import Journal
from emopillars.run.layout import RunLayout
from emopillars.run.manifest import Manifest, ShardMarker
from emopillars.run.requests import RequestBuilder
from emopillars.run.runner import _output_table
from emopillars.run.status import status_json
from emopillars.run.storage import StorageError
from emopillars.stages import STAGE_NAMES, STAGES, stage_context
from helpers import Recorder, recording_spec, request_keys_in


def open_files() -> set[Path]:
    """The files this process holds open (Linux)."""
    links = (Path("/proc/self/fd") / name for name in os.listdir("/proc/self/fd"))
    return {Path(os.path.realpath(link)) for link in links}


def markers(run_dir: Path) -> dict[tuple[str, int], str]:
    """(stage, shard) -> marker text, to see which shards a rerun rewrote."""
    return {
        (path.parent.name, int(path.stem.split("-")[1])): path.read_text()
        for path in sorted((run_dir / "manifest").glob("*/shard-*.json"))
    }


def test_rejects_are_accounted_for_and_nothing_is_dropped(corpus: Path, tmp_path: Path) -> None:
    config = fake_config(corpus, tmp_path / "run", fake_fault_rate=0.3, max_attempts=2)
    run_pipeline(config)
    stages = status_json(config.output_dir)["stages"]
    previous_outputs = 6  # stories
    for name in STAGE_NAMES:
        stage = stages[name]
        assert stage["shards_done"] == stage["shards_total"] == 3
        assert stage["inputs"] == stage["accepted"] + stage["rejected"]
        assert stage["inputs"] == previous_outputs
        previous_outputs = stage["outputs"]
        assert stage["prompt_tokens"] > 0 and stage["completion_tokens"] > 0

        # Every rejected input has a request-level row with the raw answer in the rejects table.
        tables = [
            pq.read_table(config.output_dir / name / f"rejects-{s:05d}.parquet") for s in range(3)
        ]
        rows = [row for table in tables for row in table.to_pylist()]
        request_rows = [row for row in rows if row["scope"] == "request"]
        assert len({row["input_id"] for row in request_rows}) == stage["rejected"]
        counted = {
            reason: sum(1 for r in rows if r["reason"] == reason)
            for reason in stage["reject_reasons"]
        }
        assert counted == stage["reject_reasons"]
        for row in request_rows:
            final = {"no_output", "engine_error", "below_threshold"}  # not retried
            assert row["attempts"] == 2 or row["reason"] in final
            if row["reason"] in {"invalid_json", "truncated"}:
                assert row["raw_answer"]
    reasons = {r for s in stages.values() for r in s["reject_reasons"]}
    assert {"invalid_json", "schema_violation"} & reasons  # the faults really happened


def test_a_finished_run_reruns_without_loading_the_engine(corpus: Path, tmp_path: Path) -> None:
    config = fake_config(corpus, tmp_path / "run")
    run_pipeline(config)
    before = markers(config.output_dir)
    recorder = Recorder()
    result = run_pipeline(config, recording_spec(config, recorder))
    assert recorder.loads == 0 and recorder.sent == []
    assert (result.shards_computed, result.shards_skipped, result.requests_sent) == (0, 15, 0)
    assert markers(config.output_dir) == before


def test_changed_prompt_recomputes_that_stage_and_nothing_else(
    corpus: Path, tmp_path: Path
) -> None:
    own_prompts = tmp_path / "prompts"
    shutil.copytree(prompts_dir(), own_prompts)
    config = fake_config(corpus, tmp_path / "run", prompts_dir=own_prompts)
    run_pipeline(config)
    before = markers(config.output_dir)

    rewrite = own_prompts / "v1" / "rewrite.txt"
    rewrite.write_text(rewrite.read_text() + "\nKeep it under twenty words.\n")
    recorder = Recorder()
    run_pipeline(config, recording_spec(config, recorder))
    after = markers(config.output_dir)
    changed = {key[0] for key in before if before[key] != after[key]}
    assert changed == {"rewrites"}
    assert recorder.sent and all("twenty words" in r.messages[0].content for r in recorder.sent)


def test_changed_threshold_recomputes_labels_and_downstream_only(
    corpus: Path, tmp_path: Path
) -> None:
    config = fake_config(corpus, tmp_path / "run")
    run_pipeline(config)
    before = markers(config.output_dir)
    stricter = config.model_copy(update={"label_threshold": 0.6})
    recorder = Recorder()
    run_pipeline(stricter, recording_spec(stricter, recorder))
    after = markers(config.output_dir)
    changed = {key[0] for key in before if before[key] != after[key]}
    assert changed == {"labels", "contexts", "rewrites"}
    calls = {request.schema.get("required", [""])[0] for request in recorder.sent}
    assert "characters" not in calls and "utterances" not in calls


# A journal's file left for the garbage collector to close says so (a ResourceWarning, which
# pytest reports as an unraisable exception): both are errors here.
@pytest.mark.filterwarnings("error::ResourceWarning")
@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_a_crash_mid_shard_keeps_answers_and_never_pays_twice(corpus: Path, tmp_path: Path) -> None:
    config = fake_config(corpus, tmp_path / "run")
    crashing = Recorder(fail_after_batches=6)
    with pytest.raises(RuntimeError, match="engine crashed"):
        run_pipeline(config, recording_spec(config, crashing, batch_size=3))
    journals = list((config.output_dir / "journal").glob("*/*.jsonl"))
    assert journals, "the interrupted shard keeps its journal"
    # Each journal's file stays open while its shard runs; the failed run closed them all.
    assert not set(journals) & open_files()
    done_before = markers(config.output_dir)

    resumed = Recorder()
    run_pipeline(config, recording_spec(config, resumed, batch_size=3))
    assert not crashing.keys & resumed.keys, "a request answered before the crash was sent again"
    assert not list((config.output_dir / "journal").glob("*/*.jsonl"))
    after = markers(config.output_dir)
    assert all(after[key] == text for key, text in done_before.items())
    manifest = Manifest(RunLayout(config.output_dir))
    replayed = [manifest.read(stage, shard) for stage, shard in after]
    assert sum(marker.requests_replayed for marker in replayed if marker) > 0


def test_a_kill_between_marker_and_journal_discard_resumes_cleanly(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = fake_config(corpus, tmp_path / "run")

    class Killed(BaseException):
        pass

    def die_before_discarding(journal: Journal) -> None:
        raise Killed  # the marker is written; the journal stays as a kill would leave it

    monkeypatch.setattr(Journal, "discard", die_before_discarding)
    with pytest.raises(Killed):
        run_pipeline(config)
    leftover = list((config.output_dir / "journal").glob("*/*.jsonl"))
    # Several story shards are in flight at once: each has its actors answers journaled,
    # and the first to finish its actors has its marker (written before the discard).
    assert {path.parent.name for path in leftover} == {"actors"}
    [(stage, shard)] = markers(config.output_dir)
    assert stage == "actors"

    monkeypatch.undo()
    recorder = Recorder()
    run_pipeline(config, recording_spec(config, recorder))
    assert not list((config.output_dir / "journal").glob("*/*.jsonl"))
    assert not request_keys_in(config.output_dir / "actors" / f"shard-{shard:05d}.parquet") & (
        recorder.keys
    )
    assert len(markers(config.output_dir)) == 5 * 3


def test_a_full_disk_fails_clearly_and_keeps_finished_shards(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = fake_config(corpus, tmp_path / "run")
    real_replace = os.replace

    def replace_until_full(source: str, target: str) -> None:
        if "utterances/shard-00001" in str(target):
            raise OSError(28, "No space left on device")
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", replace_until_full)
    with pytest.raises(StorageError, match="No space left on device"):
        run_pipeline(config)
    kept = markers(config.output_dir)
    assert kept and ("utterances", 1) not in kept
    assert not list(config.output_dir.glob("utterances/.*.tmp"))

    monkeypatch.setattr(os, "replace", real_replace)
    recorder = Recorder()
    run_pipeline(config, recording_spec(config, recorder))
    for stage, shard in kept:  # finished shards are neither paid for again nor rewritten
        output = config.output_dir / stage / f"shard-{shard:05d}.parquet"
        assert not request_keys_in(output) & recorder.keys
    assert all(markers(config.output_dir)[key] == text for key, text in kept.items())
    assert len(markers(config.output_dir)) == 5 * 3


def test_a_marker_is_written_only_once_its_files_and_their_names_are_durable(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A power cut must never leave a marker naming a file whose bytes or name were lost:
    each file is fsynced before its rename, and its folder after the rename, before the
    marker is written."""
    config = fake_config(corpus, tmp_path / "run")
    events: list[tuple[str, str]] = []
    real_fsync, real_replace, real_write = os.fsync, os.replace, Manifest.write

    def fsync(descriptor: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{descriptor}")))
        real_fsync(descriptor)

    def replace(source: str, target: str) -> None:
        events.append(("rename", f"{source} -> {target}"))
        real_replace(source, target)

    def write(manifest: Manifest, marker: ShardMarker) -> None:
        events.append(("marker", f"{marker.stage}/{marker.shard}"))
        real_write(manifest, marker)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(Manifest, "write", write)
    run_pipeline(config)

    layout = RunLayout(config.output_dir)
    for stage in STAGE_NAMES:
        for shard in range(3):
            marked = events.index(("marker", f"{stage}/{shard}"))
            for path in (
                layout.shard(stage, shard),
                layout.rejects(stage, shard),
                layout.answers(stage, shard),
            ):
                renamed = max(
                    i for i, (kind, what) in enumerate(events[:marked])
                    if kind == "rename" and what.endswith(f" -> {path}")
                )  # fmt: skip
                temporary = events[renamed][1].split(" -> ")[0]
                assert ("fsync", temporary) in events[:renamed], path
                assert ("fsync", str(path.parent)) in events[renamed:marked], path


def test_prefix_share_counts_what_repeats_the_previous_prompt() -> None:
    from emopillars.run.telemetry import PrefixShare

    share = PrefixShare()
    for prompt in ("static head. story A. actor 1", "static head. story A. actor 2", "other"):
        share.add(prompt)
    assert share.total == 29 + 29 + 5
    assert share.shared == 0 + 28 + 0


def test_an_answer_with_a_raw_newline_inside_a_string_is_accepted() -> None:
    from emopillars.engines import Result
    from emopillars.stages.decoding import decode
    from emopillars.stages.rewrites import RewriteUtterance

    answer = decode(
        RewriteUtterance(), Result('{"utterance": "Look\nat the water."}', "stop", 5, 5)
    )
    assert answer.utterance == "Look\nat the water."


def test_each_output_row_carries_the_columns_of_the_input_row_it_came_from(
    corpus: Path, tmp_path: Path
) -> None:
    # Rejects leave gaps, utterances make many rows of one, and a two-step stage's second
    # step numbers its rows within the first one's output: the columns carried over, taken
    # from the input's table, must still be those of the row each request was made from.
    config = fake_config(corpus, tmp_path / "run", fake_fault_rate=0.3, max_attempts=1,
                         max_actors=8)  # fmt: skip
    run_pipeline(config)
    layout = RunLayout(config.output_dir)
    requests = RequestBuilder(config, stage_context(config), engine_spec(config))
    for stage in STAGES:
        first = stage.steps[0]
        for shard in range(3):
            output = pq.read_table(layout.shard(stage.name, shard))
            assert output.schema.equals(stage.output_schema)
            for row in output.to_pylist():
                # One attempt each: every row's first request was made from its input row.
                assert requests.request(first, row, 0).key == row[first.request_column]
    first_call = STAGES[STAGE_NAMES.index("contexts")].steps[0].call
    contexts = [pq.read_table(layout.rejects("contexts", shard)) for shard in range(3)]
    assert any(first_call in table.column("call").to_pylist() for table in contexts)


def test_an_input_table_of_another_schema_gives_the_same_output_from_the_rows() -> None:
    stage = STAGES[-1]
    added = stage.output_schema.names[len(stage.input_schema) :]
    rows = [
        {name: f"{name}-{index}" if kind == pa.string() else None for name, kind in zip(
            stage.input_schema.names, stage.input_schema.types, strict=True)}
        for index in range(3)
    ]  # fmt: skip
    source = pa.Table.from_pylist(rows, schema=stage.input_schema)
    origin = [2, 0, 0]
    output = [{**rows[index], **{name: f"new-{n}" for name in added}} for n, index in
              enumerate(origin)]  # fmt: skip
    taken = _output_table(stage, source, origin, output)
    other = source.drop_columns([stage.input_schema.names[-1]])
    assert _output_table(stage, other, origin, output).equals(taken)
    assert taken.to_pylist() == output
    with pytest.raises(ValueError, match="does not match its schema"):
        _output_table(stage, other, origin, [{**output[0], "stray": 1}])
