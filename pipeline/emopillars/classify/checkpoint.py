"""Checkpoints of a training: the best model, saved whole or not at all, and the state to
resume from after each epoch."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from emopillars.classify.history import History
from emopillars.classify.model import ClassifierCard, write_card
from emopillars.messages import first_line
from emopillars.run.storage import CorruptFileError

CHECKPOINT = "checkpoint.pt"


class TrainingError(RuntimeError):
    """Training cannot start: no data to validate on, or MODEL_DIR holds another training."""


def save_model(model: Any, tokenizer: Any, model_dir: Path, card: ClassifierCard) -> None:
    """Save into a side folder, then move each file into place: a kill mid-save leaves the
    previous best model whole."""
    staging = model_dir / ".saving"
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    write_card(staging, card)
    for path in sorted(staging.iterdir()):
        os.replace(path, model_dir / path.name)
    staging.rmdir()


def resume_state(model_dir: Path, identity: str) -> dict[str, Any] | None:
    path = model_dir / CHECKPOINT
    if not path.exists():
        return None
    import pickle

    import torch

    start_over = f"delete it to start the training in {model_dir} over"
    try:
        state: Any = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as error:  # torn, cut
        raise CorruptFileError(path, first_line(error), start_over) from error
    if not isinstance(state, dict) or not {"identity", "epoch", "history"} <= set(state):
        raise CorruptFileError(path, "not a checkpoint of emopillars train", start_over)
    if state["identity"] != identity:
        raise TrainingError(
            f"{model_dir} holds a training with other settings or data: choose another "
            f"--output, or delete {path} to start over there"
        )
    checked: dict[str, Any] = state
    return checked


def write_checkpoint(
    model_dir: Path,
    identity: str,
    epoch: int,
    history: History,
    model: Any,
    optimizer: Any,
    scheduler: Any,
) -> None:
    import torch

    state: dict[str, Any] = {"identity": identity, "epoch": epoch, "history": history.model_dump()}
    if not history.finished:  # a finished training needs no optimizer state to resume
        state |= {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
        }
    temporary = model_dir / f".{CHECKPOINT}.tmp"
    torch.save(state, temporary)
    os.replace(temporary, model_dir / CHECKPOINT)
