"""Scores attached to a run show in `emopillars report` and on the published card; without
the train extra, `train` and `evaluate` say what to install."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from emopillars.cli.main import main
from emopillars.dataset.measured import Measurement, attach, from_evaluation, read_attached

EVALUATION = {
    "model": "/models/minilm-context-less",
    "config": "context_less",
    "target": "goemotions:test",
    "examples": 5427,
    "labels_scored": 28,
    "threshold": 0.25,
    "macro_f1": 0.4123,
    "micro_f1": 0.5011,
    "comparisons": {},
}


def test_attached_scores_show_in_the_report_and_on_the_published_card(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    attach(run_dir, from_evaluation(EVALUATION))
    judged = Measurement(
        kind="judge-teacher",
        subject="vllm Mistral-7B",
        target="dev.tsv",
        examples=50,
        macro_f1=0.31,
        threshold=0.3,
    )
    attach(run_dir, judged)
    assert [m.kind for m in read_attached(run_dir)] == ["evaluate", "judge-teacher"]

    assert main(["report", str(run_dir)]) == 0
    report = capsys.readouterr().out
    assert "minilm-context-less" in report and "0.412" in report
    assert "teacher as annotator" in report and "best label_threshold 0.3" in report

    staging = tmp_path / "staging"
    assert main(["publish", str(run_dir), "--repo-id", "me/data", "--dry-run", str(staging)]) == 0
    card = (staging / "README.md").read_text(encoding="utf-8")
    assert "## Measured" in card
    assert "| classifier | minilm-context-less | goemotions:test (5427) | 0.412 |" in card
    # attaching changes no dataset file: the assembled card has no such section
    assert "## Measured" not in (run_dir / "dataset" / "README.md").read_text(encoding="utf-8")


def test_the_latest_attachment_of_a_measurement_replaces_the_one_before(run_dir: Path) -> None:
    attach(run_dir, from_evaluation(EVALUATION))
    attach(run_dir, from_evaluation({**EVALUATION, "macro_f1": 0.5}))
    assert [m.macro_f1 for m in read_attached(run_dir)] == [0.5]


def test_an_unreadable_attachment_is_skipped_with_a_warning(
    run_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    attach(run_dir, from_evaluation(EVALUATION))
    (run_dir / "evaluations" / "broken.json").write_text("{not json", encoding="utf-8")
    assert len(read_attached(run_dir)) == 1
    assert "broken.json" in caplog.text


def test_attach_needs_a_run_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        attach(tmp_path, from_evaluation(EVALUATION))


@pytest.mark.skipif(
    importlib.util.find_spec("torch") is not None, reason="the train extra is installed here"
)
@pytest.mark.parametrize(
    "argv",
    [
        ["train", "RUN", "--config", "context_less"],
        ["evaluate", "MODEL", "--on", "goemotions"],
    ],
)
def test_without_the_train_extra_the_commands_say_what_to_install(
    run_dir: Path, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [str(run_dir) if part in ("RUN", "MODEL") else part for part in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "pip install 'emopillars[train]'" in err[0]


def test_train_refuses_bad_settings_before_loading_anything(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", str(run_dir), "--config", "context_less", "--epochs", "0"]
    assert main(argv) == 2
    assert "epochs" in capsys.readouterr().err


def test_evaluation_json_is_what_attach_reads() -> None:
    measurement = from_evaluation(json.loads(json.dumps(EVALUATION)))
    assert measurement.subject == "minilm-context-less"
    assert measurement.macro_f1 == 0.4123
