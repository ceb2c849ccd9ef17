"""What a training is (its settings) and how it went (per epoch), as training.json and
training.png in MODEL_DIR."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from emopillars.classify.examples import ConfigName, Targets
from emopillars.run.storage import write_json

HISTORY = "training.json"
PLOT = "training.png"
# The paper's settings per dataset config: (batch size, max length in tokens).
PAPER_SHAPE: dict[str, tuple[int, int]] = {"context_less": (64, 128), "context_aware": (32, 512)}


class TrainSettings(BaseModel):
    """Everything that decides the trained weights (the device does not)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    config: ConfigName = "context_less"
    base_model: str = "roberta-base"
    targets: Targets = "labels"
    epochs: int = Field(default=10, ge=1)
    batch_size: int | None = Field(default=None, ge=1)  # None: the paper's for the config
    learning_rate: float = Field(default=2e-5, gt=0)
    max_length: int | None = Field(default=None, ge=8)
    warmup_ratio: float = Field(default=0.06, ge=0, lt=1)
    patience: int = Field(default=3, ge=1)  # epochs without a better validation macro-F1
    seed: int = 0

    @property
    def resolved_batch_size(self) -> int:
        return self.batch_size or PAPER_SHAPE[self.config][0]

    @property
    def resolved_max_length(self) -> int:
        return self.max_length or PAPER_SHAPE[self.config][1]


class EpochRecord(BaseModel):
    epoch: int
    train_loss: float
    validation_loss: float
    validation_macro_f1: float
    threshold: float
    seconds: float
    examples_per_second: float


class History(BaseModel):
    settings: TrainSettings
    dataset_sha256: dict[str, str]
    epochs: list[EpochRecord] = Field(default_factory=list)
    best_epoch: int = 0
    finished: bool = False
    stopped_early: bool = False

    @property
    def best(self) -> EpochRecord | None:
        return next((e for e in self.epochs if e.epoch == self.best_epoch), None)


def write_figures(model_dir: Path, history: History) -> None:
    write_json(model_dir / HISTORY, history.model_dump(mode="json"))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [e.epoch for e in history.epochs]
    figure, (losses, f1) = plt.subplots(1, 2, figsize=(9, 3.5))
    losses.plot(epochs, [e.train_loss for e in history.epochs], marker="o", label="train")
    losses.plot(epochs, [e.validation_loss for e in history.epochs], marker="o", label="validation")
    losses.set(xlabel="epoch", ylabel="binary cross-entropy", title="loss")
    losses.legend()
    f1.plot(epochs, [e.validation_macro_f1 for e in history.epochs], marker="o")
    f1.axvline(history.best_epoch, color="grey", linestyle=":", label="kept")
    f1.set(xlabel="epoch", ylabel="macro-F1", title="validation macro-F1 (calibrated)")
    f1.legend()
    figure.tight_layout()
    figure.savefig(model_dir / PLOT, dpi=100)
    plt.close(figure)
