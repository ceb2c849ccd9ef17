"""Fine-tune an encoder on a run's dataset, the paper's way: one sigmoid per label, binary
cross-entropy, AdamW at 2e-5 for 10 epochs (batch 64 and 128 tokens context-less; batch 32
and 512 tokens context-aware).

Each epoch ends on the validation split: its decision thresholds are calibrated there (one
global, one per label), the best epoch's model is kept in MODEL_DIR, and training stops early
when validation macro-F1 stops improving. A checkpoint per epoch lets a killed training
resume where it stopped: epoch e always sees the same example order and dropout draws, so a
resumed training ends where an uninterrupted one does.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emopillars.classify.checkpoint import (
    CHECKPOINT,
    TrainingError,
    resume_state,
    save_model,
    write_checkpoint,
)
from emopillars.classify.examples import (
    Examples,
    dataset_fingerprint,
    read_examples,
    require_assembled,
)
from emopillars.classify.history import EpochRecord, History, TrainSettings, write_figures
from emopillars.classify.metrics import calibrate, predict, score
from emopillars.classify.model import (
    ClassifierCard,
    check_saved_model,
    encode,
    label_maps,
    pick_device,
    predict_probabilities,
    require_train_extra,
)
from emopillars.hashing import stable_hash
from emopillars.messages import first_line
from emopillars.stages.taxonomy import LABELS

__all__ = ["TrainSettings", "TrainingError", "TrainingResult", "train"]

log = logging.getLogger("emopillars")


@dataclass(frozen=True)
class TrainingResult:
    model_dir: Path
    history: History
    resumed_from_epoch: int  # 0 for a fresh training
    device: str


def train(
    run_dir: Path,
    model_dir: Path,
    settings: TrainSettings,
    device: str = "auto",
    progress: bool = True,
) -> TrainingResult:
    """Train (or resume training) a classifier on `run_dir`'s dataset into `model_dir`."""
    require_train_extra()
    import torch
    from transformers import AutoTokenizer

    require_assembled(run_dir, [settings.config])
    train_set = read_examples(run_dir, settings.config, "train", settings.targets)
    validation = read_examples(run_dir, settings.config, "validation", "labels")
    for name, examples in (("train", train_set), ("validation", validation)):
        if not len(examples):
            raise TrainingError(
                f"the {name} split of {settings.config} in {run_dir} is empty: generate from "
                "more stories (every split needs at least one)"
            )
    history = History(
        settings=settings, dataset_sha256=dataset_fingerprint(run_dir, settings.config)
    )
    identity = stable_hash(history.model_dump(mode="json", include={"settings", "dataset_sha256"}))
    state = resume_state(model_dir, identity)
    if state is not None and state["history"]["finished"]:
        # A finished checkpoint keeps no weights: the saved model is all there is of it.
        check_saved_model(model_dir, f"delete {model_dir / CHECKPOINT} and train again")
        log.info("%s already holds this training: nothing to do", model_dir)
        return TrainingResult(model_dir, History(**state["history"]), state["epoch"], "none")

    device = pick_device(device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(settings.base_model)
        torch.manual_seed(settings.seed)  # the new classifier head's initial weights
        model = _base_model(settings.base_model)
    except (OSError, ValueError) as error:  # transformers' "not found", "offline", "not a model"
        reason = first_line(error)
        raise TrainingError(
            f"cannot load --base-model {settings.base_model}: {reason}; pass a model folder, "
            "or an id that the Hub (or your Hugging Face cache) has"
        ) from error
    model.to(device)
    length = settings.resolved_max_length
    train_features = _features(tokenizer, train_set, length)
    validation_features = _features(tokenizer, validation, length)
    batch_size = settings.resolved_batch_size
    steps_per_epoch = math.ceil(len(train_set) / batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate)
    scheduler = _schedule(optimizer, settings, steps_per_epoch)
    first_epoch = 1
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history = History(**state["history"])
        first_epoch = state["epoch"] + 1
        log.info("resuming the training in %s after epoch %d", model_dir, state["epoch"])
    model_dir.mkdir(parents=True, exist_ok=True)
    autocast = _autocast(device)
    for epoch in range(first_epoch, settings.epochs + 1):
        began = time.perf_counter()
        # Seeded per epoch, not once: a resumed epoch draws what an uninterrupted one would.
        torch.manual_seed(settings.seed * 1_000_003 + epoch)
        order = torch.randperm(len(train_set)).tolist()
        model.train()
        losses: list[float] = []
        batches = range(0, len(order), batch_size)
        for start in _bar(batches, f"epoch {epoch}/{settings.epochs}", progress):
            indices = order[start : start + batch_size]
            batch = tokenizer.pad([train_features[i] for i in indices], return_tensors="pt")
            targets = torch.tensor(train_set.targets[indices], dtype=torch.float32, device=device)
            with autocast:
                logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), targets)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
        train_seconds = time.perf_counter() - began
        record, calibration = _validate(
            model, tokenizer, validation, validation_features, settings, device
        )
        record = record.model_copy(
            update={
                "epoch": epoch,
                "train_loss": round(sum(losses) / len(losses), 6),
                "seconds": round(time.perf_counter() - began, 2),
                "examples_per_second": round(len(train_set) / train_seconds, 1),
            }
        )
        history.epochs.append(record)
        best = history.best
        if best is None or record.validation_macro_f1 > best.validation_macro_f1:
            history.best_epoch = epoch
            save_model(model, tokenizer, model_dir, _card(history, calibration, run_dir))
        log.info(
            "epoch %d: train loss %.4f, validation loss %.4f, macro-F1 %.4f at %.2f",
            epoch,
            record.train_loss,
            record.validation_loss,
            record.validation_macro_f1,
            record.threshold,
        )
        stalled = epoch - history.best_epoch >= settings.patience
        if stalled or epoch == settings.epochs:
            history.finished, history.stopped_early = True, stalled and epoch < settings.epochs
        write_checkpoint(model_dir, identity, epoch, history, model, optimizer, scheduler)
        write_figures(model_dir, history)
        if history.finished:
            break
    return TrainingResult(model_dir, history, first_epoch - 1, device)


# -- pieces ----------------------------------------------------------------------------------
def _base_model(name: str) -> Any:
    from transformers import AutoModelForSequenceClassification

    id2label, label2id = label_maps()
    return AutoModelForSequenceClassification.from_pretrained(
        name,
        num_labels=len(LABELS),
        id2label=id2label,
        label2id=label2id,
        problem_type="multi_label_classification",
    )


def _features(tokenizer: Any, examples: Examples, max_length: int) -> list[dict[str, Any]]:
    encoded = encode(tokenizer, examples.texts, examples.pairs, max_length)
    return [{key: values[i] for key, values in encoded.items()} for i in range(len(examples))]


def _schedule(optimizer: Any, settings: TrainSettings, steps_per_epoch: int) -> Any:
    from transformers import get_linear_schedule_with_warmup

    total = steps_per_epoch * settings.epochs
    return get_linear_schedule_with_warmup(optimizer, int(total * settings.warmup_ratio), total)


def _autocast(device: str) -> Any:
    import contextlib

    import torch

    if device == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _bar(batches: range, description: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    # disable=None: a bar at a terminal, nothing in a log file.
    return tqdm(batches, desc=description, unit="batch", disable=None if enabled else True)


def _validate(
    model: Any,
    tokenizer: Any,
    validation: Examples,
    features: list[dict[str, Any]],
    settings: TrainSettings,
    device: str,
) -> tuple[EpochRecord, Any]:
    import numpy as np

    probabilities = predict_probabilities(
        model,
        tokenizer,
        validation.texts,
        validation.pairs,
        max_length=settings.resolved_max_length,
        batch_size=settings.resolved_batch_size,
        device=device,
    )
    clipped = np.clip(probabilities, 1e-7, 1 - 1e-7)
    gold = validation.targets
    loss = float(-(gold * np.log(clipped) + (1 - gold) * np.log(1 - clipped)).mean())
    calibration = calibrate(gold, probabilities, LABELS)
    scores = score(gold, predict(probabilities, calibration.threshold), LABELS)
    record = EpochRecord(
        epoch=0,
        train_loss=0.0,
        validation_loss=round(loss, 6),
        validation_macro_f1=round(scores.macro_f1, 6),
        threshold=calibration.threshold,
        seconds=0.0,
        examples_per_second=0.0,
    )
    return record, calibration


def _card(history: History, calibration: Any, run_dir: Path) -> ClassifierCard:
    settings = history.settings
    best = history.best
    assert best is not None
    return ClassifierCard(
        config=settings.config,
        base_model=settings.base_model,
        max_length=settings.resolved_max_length,
        targets=settings.targets,
        threshold=calibration.threshold,
        per_label_thresholds=calibration.per_label,
        validation_macro_f1=best.validation_macro_f1,
        best_epoch=best.epoch,
        trained_on=str(run_dir),
        dataset_sha256=history.dataset_sha256,
    )
