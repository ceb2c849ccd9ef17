"""Every answer is kept: a changed parser or parse setting re-parses a finished shard's kept
answers instead of asking the engine again, and a step's declared columns are enforced."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from conftest import dataset_contents, fake_config
from emopillars.api import run_pipeline
from emopillars.run.layout import RunLayout
from emopillars.run.runner import StepContractError
from emopillars.run.status import stage_totals, status_table
from emopillars.run.storage import write_parquet
from emopillars.run.tables import ANSWER
from emopillars.stages import STAGE_NAMES
from emopillars.stages.base import Parsed, Row, StageContext
from emopillars.stages.labels import LabelsAnswer, SoftLabel
from helpers import Recorder, recording_spec


def labelling_requests(recorder: Recorder) -> list[Any]:
    return [r for r in recorder.sent if r.schema.get("required") == ["emotions"]]


def test_every_answer_of_a_finished_shard_is_kept(corpus: Path, tmp_path: Path) -> None:
    config = fake_config(corpus, tmp_path / "run")
    recorder = Recorder()
    run_pipeline(config, recording_spec(config, recorder))
    layout = RunLayout(config.output_dir)
    kept: dict[str, dict[str, Any]] = {}
    for stage in STAGE_NAMES:
        for shard in range(3):
            table = pq.read_table(layout.answers(stage, shard))
            assert table.schema.equals(ANSWER)
            kept.update({row["key"]: row for row in table.to_pylist()})
    # Every request the engine answered, retries included, with what it said.
    assert set(kept) == recorder.keys
    assert all(row["finish_reason"] in {"stop", "length"} for row in kept.values())


def test_a_changed_threshold_reparses_labels_without_the_engine(
    corpus: Path, tmp_path: Path
) -> None:
    config = fake_config(corpus, tmp_path / "run")
    run_pipeline(config)
    first = stage_totals(config.output_dir)["labels"]

    stricter = config.model_copy(update={"label_threshold": 0.6})
    recorder = Recorder()
    result = run_pipeline(stricter, recording_spec(stricter, recorder))

    labels = stage_totals(config.output_dir)["labels"]
    assert labelling_requests(recorder) == [] and labels.requests_sent == 0
    assert labels.answers_reparsed >= first.inputs > 0
    assert labels.accepted < first.accepted  # the stricter threshold really applied
    assert result.shards_computed > 0
    assert "reparsed" in status_table(config.output_dir)

    fresh = fake_config(corpus, tmp_path / "fresh", label_threshold=0.6)
    run_pipeline(fresh)
    assert dataset_contents(config.output_dir) == dataset_contents(fresh.output_dir)


def test_a_new_parser_version_reparses_without_loading_the_engine(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = fake_config(corpus, tmp_path / "run")
    run_pipeline(config)
    dataset = dataset_contents(config.output_dir)

    monkeypatch.setattr(SoftLabel, "parser_version", SoftLabel.parser_version + 1)
    recorder = Recorder()
    result = run_pipeline(config, recording_spec(config, recorder))
    # The labels shards were computed again from their kept answers; their rows did not
    # change, so no later stage had anything new to do.
    assert recorder.loads == 0 and recorder.sent == []
    assert result.shards_computed == 3 and result.shards_skipped == 12
    assert stage_totals(config.output_dir)["labels"].answers_reparsed > 0
    # The same data; only dataset/manifest.json changed, which names the markers the data
    # came from: the labels markers now carry the new parser's fingerprint.
    after = dataset_contents(config.output_dir)
    assert after.pop("manifest.json") != dataset.pop("manifest.json")
    assert after == dataset


def test_a_run_folder_without_kept_answers_is_recomputed_with_a_message(
    corpus: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = fake_config(corpus, tmp_path / "run")
    run_pipeline(config)
    dataset = dataset_contents(config.output_dir)
    layout = RunLayout(config.output_dir)
    # As an emopillars from before kept answers left it: other fingerprints, no answers.
    for path in (config.output_dir / "manifest").glob("*/shard-*.json"):
        marker = json.loads(path.read_text())
        for key in ("request_fingerprint", "answers", "answers_reparsed"):
            marker.pop(key)
        marker["fingerprint"] = "from-an-older-version"
        path.write_text(json.dumps(marker))
    for stage in STAGE_NAMES:
        for shard in range(3):
            layout.answers(stage, shard).unlink()

    recorder = Recorder()
    with caplog.at_level(logging.INFO, logger="emopillars"):
        run_pipeline(config, recording_spec(config, recorder))
    assert recorder.sent, "without kept answers the engine is the only source"
    assert "actors shard 0: recomputing; it has no kept answers" in caplog.text
    assert dataset_contents(config.output_dir) == dataset
    assert all(layout.answers(stage, 0).exists() for stage in STAGE_NAMES)


def test_a_step_returning_an_undeclared_key_stops_with_a_clear_error(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = SoftLabel.parse

    def parse_with_extra_key(
        self: SoftLabel, row: Row, answer: LabelsAnswer, ctx: StageContext
    ) -> Parsed:
        parsed = original(self, row, answer, ctx)
        return Parsed([{**new, "confidence": 1.0} for new in parsed.rows], parsed.item_rejects)

    monkeypatch.setattr(SoftLabel, "parse", parse_with_extra_key)
    config = fake_config(corpus, tmp_path / "run")
    with pytest.raises(StepContractError) as caught:
        run_pipeline(config)
    message = str(caught.value)
    assert "step 'labels'" in message and "'confidence'" in message
    # What finished before the faulty step is kept.
    assert (config.output_dir / "manifest" / "utterances" / "shard-00000.json").exists()
    assert not (config.output_dir / "manifest" / "labels").exists()


def test_rows_that_do_not_match_a_schema_are_never_written(tmp_path: Path) -> None:
    row = {"key": "k", "call": "labels", "text": "{}", "finish_reason": "stop",
           "prompt_tokens": 1, "completion_tokens": 1, "error": None}  # fmt: skip
    write_parquet(tmp_path / "ok.parquet", [row], ANSWER)
    with pytest.raises(ValueError, match=r"extra \['surprise'\]"):
        write_parquet(tmp_path / "extra.parquet", [{**row, "surprise": 1}], ANSWER)
    with pytest.raises(ValueError, match=r"missing \['error'\]"):
        write_parquet(
            tmp_path / "missing.parquet", [{k: v for k, v in row.items() if k != "error"}], ANSWER
        )
    assert not (tmp_path / "extra.parquet").exists()


def test_an_engine_error_is_never_reused_as_an_answer(tmp_path: Path) -> None:
    from emopillars.engines import Result
    from emopillars.run.answers import ShardAnswers
    from emopillars.run.journal import Journal

    journal = Journal(tmp_path / "journal.jsonl")
    journal.record(
        [("a", Result("", "error", 0, 0, "server down")), ("b", Result("{}", "stop", 1, 1))]
    )
    journal.close()
    kept = {"c": Result("", "error", 0, 0, "timeout"), "d": Result("{}", "stop", 1, 1)}
    answers = ShardAnswers(Journal(journal.path), kept)
    assert answers.lookup("a") is None and answers.lookup("c") is None
    assert answers.lookup("b") is not None and answers.lookup("d") is not None
    assert (answers.replayed, answers.reparsed) == (1, 1)
