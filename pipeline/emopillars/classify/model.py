"""A trained classifier's folder: a `transformers` model and tokenizer with 28 sigmoid outputs,
plus `emopillars.json`, which says what it reads and the decision thresholds calibrated on the
validation split. The folder loads with AutoModelForSequenceClassification as it is, so it
can be pushed to the Hub unchanged.

torch and transformers come with the `train` extra and are imported only here and in train.py.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from emopillars.classify.examples import ConfigName, Targets
from emopillars.classify.metrics import Matrix
from emopillars.messages import first_line
from emopillars.run.storage import CorruptFileError, write_json
from emopillars.stages.taxonomy import LABELS

if TYPE_CHECKING:
    import torch

CARD_FILE = "emopillars.json"
WEIGHTS_FILE = "model.safetensors"  # what transformers' save_pretrained writes
INSTALL_HINT = (
    "training and evaluating classifiers need the train extra: pip install 'emopillars[train]'"
)


class TrainExtraMissing(ImportError):
    """torch or transformers is not installed."""


def require_train_extra() -> None:
    missing = [name for name in ("torch", "transformers") if importlib.util.find_spec(name) is None]
    if missing:
        raise TrainExtraMissing(f"{' and '.join(missing)} not installed: {INSTALL_HINT}")


class ClassifierCard(BaseModel):
    """What emopillars needs to know about a trained classifier, beside transformers' files."""

    model_config = ConfigDict(extra="forbid")

    config: ConfigName  # which dataset config it was trained on: the shape of its input
    base_model: str
    max_length: int
    targets: Targets
    threshold: float = Field(ge=0.0, le=1.0)  # one global threshold, calibrated on validation
    per_label_thresholds: dict[str, Annotated[float, Field(ge=0.0, le=1.0)]]
    validation_macro_f1: float
    best_epoch: int
    trained_on: str  # the run folder
    dataset_sha256: dict[str, str]  # the dataset files, so that a model names its data

    @model_validator(mode="after")
    def _every_label_has_a_threshold(self) -> ClassifierCard:
        if set(self.per_label_thresholds) != set(LABELS):
            raise ValueError(
                "per_label_thresholds must hold one threshold for each of the 28 labels"
            )
        return self

    @property
    def label_thresholds(self) -> Matrix:
        return np.array([self.per_label_thresholds[label] for label in LABELS])


def read_card(model_dir: Path, todo: str | None = None) -> ClassifierCard:
    """The card of a trained model; CorruptFileError with `todo` when it is unreadable."""
    path = model_dir / CARD_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{model_dir} is not a classifier trained by emopillars (no {CARD_FILE}): "
            "train one with: emopillars train RUN_DIR --output MODEL_DIR"
        )
    try:
        return ClassifierCard.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (UnicodeDecodeError, json.JSONDecodeError, ValidationError) as error:
        raise CorruptFileError(path, first_line(error), todo or _train_again(model_dir)) from error


def check_saved_model(model_dir: Path, todo: str | None = None) -> ClassifierCard:
    """The card, once the card and the weights of a saved model are readable: a torn or
    edited file is one CorruptFileError naming it (with `todo`), not a traceback from deep
    inside transformers."""
    card = read_card(model_dir, todo)
    weights = sorted(model_dir.glob("*.safetensors"))
    if not weights:
        raise CorruptFileError(model_dir / WEIGHTS_FILE, "missing", todo or _train_again(model_dir))
    from safetensors import SafetensorError, safe_open

    for path in weights:
        try:
            with safe_open(path, framework="numpy") as tensors:
                tensors.keys()
        except (SafetensorError, OSError) as error:
            raise CorruptFileError(
                path, first_line(error), todo or _train_again(model_dir)
            ) from error
    return card


def _train_again(model_dir: Path) -> str:
    return f"train the model again (emopillars train ... --output {model_dir})"


def write_card(model_dir: Path, card: ClassifierCard) -> None:
    write_json(model_dir / CARD_FILE, card.model_dump(mode="json"))


def quiet_transformers() -> None:
    """For the command line: transformers' load reports (a fresh classifier head is
    "missing" by design) and per-file save bars would bury the training's own progress."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()


class DeviceError(ValueError):
    """--device names no device that torch can use on this machine."""


def pick_device(requested: str = "auto") -> str:
    """The torch device to use: `auto` picks the best there is; any other name must be one
    torch knows and this machine has (DeviceError, before any model loads)."""
    import torch

    if requested != "auto":
        try:
            device = torch.device(requested)
        except RuntimeError as error:
            raise DeviceError(
                f"--device {requested!r} is no device torch knows: use auto, cpu, cuda, cuda:N "
                "or mps"
            ) from error
        if device.type == "cuda" and (
            not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()
        ):
            found = torch.cuda.device_count() if torch.cuda.is_available() else 0
            raise DeviceError(
                f"--device {requested}: torch sees {found} CUDA GPU(s) here: use --device cpu, "
                "or auto"
            )
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise DeviceError(f"--device {requested}: MPS is not available here: use --device cpu")
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def label_maps() -> tuple[dict[int, str], dict[str, int]]:
    return dict(enumerate(LABELS)), {label: index for index, label in enumerate(LABELS)}


def encode(
    tokenizer: Any, texts: Sequence[str], pairs: Sequence[str] | None, max_length: int
) -> dict[str, Any]:
    """Tokenized inputs, unpadded (batches are padded as they are drawn). A pair's context is
    cut first when too long: the utterance is what is being classified."""
    if pairs is None:
        encoded: dict[str, Any] = tokenizer(list(texts), truncation=True, max_length=max_length)
    else:
        encoded = tokenizer(
            list(texts), list(pairs), truncation="only_first", max_length=max_length
        )
    return encoded


class Classifier:
    """A trained classifier, ready to score texts."""

    def __init__(self, model_dir: Path, device: str = "auto") -> None:
        require_train_extra()
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.card = check_saved_model(model_dir)
        self.device = pick_device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForSequenceClassification.from_pretrained(model_dir)
        self.model.to(self.device).eval()

    def probabilities(
        self, texts: Sequence[str], pairs: Sequence[str] | None = None, batch_size: int = 64
    ) -> Matrix:
        """(examples, 28) sigmoid scores."""
        return predict_probabilities(
            self.model,
            self.tokenizer,
            texts,
            pairs,
            max_length=self.card.max_length,
            batch_size=batch_size,
            device=self.device,
        )


def predict_probabilities(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    pairs: Sequence[str] | None,
    max_length: int,
    batch_size: int,
    device: str,
) -> Matrix:
    import torch

    encoded = encode(tokenizer, texts, pairs, max_length)
    features = [
        {key: values[index] for key, values in encoded.items()} for index in range(len(texts))
    ]
    # Batches of similar lengths pad little: scored longest first, returned in input order.
    order = sorted(range(len(features)), key=lambda i: -len(features[i]["input_ids"]))
    scores = np.zeros((len(features), len(LABELS)))
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            indices = order[start : start + batch_size]
            batch = tokenizer.pad([features[i] for i in indices], return_tensors="pt")
            logits = model(**_to(batch, device)).logits
            scores[indices] = torch.sigmoid(logits.float()).cpu().numpy()
    return scores


def _to(batch: Any, device: str) -> dict[str, torch.Tensor]:
    return {key: value.to(device) for key, value in batch.items()}
