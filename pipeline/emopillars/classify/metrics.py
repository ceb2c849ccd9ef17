"""Multi-label scores: precision, recall and F1 per label, macro and micro F1, threshold sweeps
and calibration. numpy only, so the teacher's judge and the report need no torch.

Macro-F1 averages over the labels the gold set contains (support > 0): a label absent from a
small or regrouped test set cannot be scored, and a 0 for it would measure the test set, not
the classifier. Predictions of absent labels still count, in micro-F1 and in their precision.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Matrix = npt.NDArray[np.float64]

# The report's sweep, and the grid thresholds are calibrated on: 0.05, 0.10, ..., 0.95.
SWEEP: tuple[float, ...] = tuple(round(step / 100, 2) for step in range(5, 100, 5))


@dataclass(frozen=True)
class LabelScore:
    precision: float
    recall: float
    f1: float
    support: int  # gold examples with the label

    def as_dict(self) -> dict[str, float | int]:
        return {
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f1": round(self.f1, 4),
            "support": self.support,
        }


@dataclass(frozen=True)
class Scores:
    macro_f1: float
    micro_f1: float
    per_label: dict[str, LabelScore]
    examples: int
    labels_scored: int  # labels with gold support: what macro-F1 averages over


def _ratio(numerator: npt.NDArray[np.float64], denominator: npt.NDArray[np.float64]) -> Matrix:
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def score(gold: Matrix, predicted: Matrix, names: Sequence[str]) -> Scores:
    """Scores of 0/1 predictions against 0/1 gold labels, both (examples, labels)."""
    is_gold = np.asarray(gold, dtype=bool)
    is_predicted = np.asarray(predicted, dtype=bool)
    if is_gold.shape != is_predicted.shape or is_gold.shape[1] != len(names):
        raise ValueError(f"shapes differ: gold {is_gold.shape}, predicted {is_predicted.shape}")
    true_positive = (is_gold & is_predicted).sum(axis=0).astype(np.float64)
    predicted_count = is_predicted.sum(axis=0).astype(np.float64)
    support = is_gold.sum(axis=0).astype(np.float64)
    precision = _ratio(true_positive, predicted_count)
    recall = _ratio(true_positive, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    present = support > 0
    micro_denominator = predicted_count.sum() + support.sum()
    micro = 2 * true_positive.sum() / micro_denominator if micro_denominator else 0.0
    return Scores(
        macro_f1=float(f1[present].mean()) if present.any() else 0.0,
        micro_f1=float(micro),
        per_label={
            name: LabelScore(float(p), float(r), float(f), int(s))
            for name, p, r, f, s in zip(names, precision, recall, f1, support, strict=True)
        },
        examples=int(is_gold.shape[0]),
        labels_scored=int(present.sum()),
    )


def predict(probabilities: Matrix, thresholds: float | npt.NDArray[np.float64]) -> Matrix:
    """0/1 predictions: a label is predicted at or above its threshold (one for all labels,
    or one per label). No fallback to the most probable label: published GoEmotions figures
    threshold plainly, and so do these."""
    return (np.asarray(probabilities, dtype=np.float64) >= thresholds).astype(np.float64)


def sweep(
    gold: Matrix, probabilities: Matrix, names: Sequence[str], grid: Sequence[float] = SWEEP
) -> dict[float, Scores]:
    """Scores at each threshold of the grid, one global threshold at a time."""
    return {t: score(gold, predict(probabilities, t), names) for t in grid}


@dataclass(frozen=True)
class Calibration:
    threshold: float  # the global threshold that maximises macro-F1
    per_label: dict[str, float]  # each label's own best threshold (the global one if unseen)


def calibrate(
    gold: Matrix, probabilities: Matrix, names: Sequence[str], grid: Sequence[float] = SWEEP
) -> Calibration:
    """Thresholds chosen on a validation set: one global, and one per label, each the grid
    point with the best F1 (the lowest threshold wins a tie, keeping recall)."""
    scored = sweep(gold, probabilities, names, grid)
    best_global = max(grid, key=lambda t: (scored[t].macro_f1, -t))
    gold_bool = np.asarray(gold, dtype=bool)
    per_label: dict[str, float] = {}
    for index, name in enumerate(names):
        if not gold_bool[:, index].any():
            per_label[name] = best_global
            continue
        column = np.asarray(probabilities)[:, index]
        f1s = [_binary_f1(gold_bool[:, index], column >= t) for t in grid]
        per_label[name] = grid[int(np.argmax(f1s))]
    return Calibration(threshold=best_global, per_label=per_label)


def _binary_f1(gold: npt.NDArray[np.bool_], predicted: npt.NDArray[np.bool_]) -> float:
    true_positive = float((gold & predicted).sum())
    total = float(gold.sum() + predicted.sum())
    return 2 * true_positive / total if total else 0.0
