"""Multi-label scores, checked against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
from emopillars.classify.metrics import calibrate, predict, score, sweep

NAMES = ("a", "b", "c")


def test_scores_by_hand() -> None:
    gold = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 0]], dtype=float)
    predicted = np.array([[1, 0, 0], [0, 1, 1], [0, 1, 0], [1, 0, 0]], dtype=float)
    scores = score(gold, predicted, NAMES)
    # a: tp 1, predicted 2, support 2 -> p 0.5, r 0.5; b: tp 2, predicted 2, support 2 -> 1, 1
    assert scores.per_label["a"].precision == pytest.approx(0.5)
    assert scores.per_label["a"].recall == pytest.approx(0.5)
    assert scores.per_label["b"].f1 == pytest.approx(1.0)
    # c has no gold support: left out of the macro average, still a false positive in micro
    assert scores.per_label["c"].support == 0
    assert scores.labels_scored == 2
    assert scores.macro_f1 == pytest.approx((0.5 + 1.0) / 2)
    # micro: tp 3, predicted 5, support 4 -> 2*3/9
    assert scores.micro_f1 == pytest.approx(6 / 9)
    assert scores.examples == 4


def test_predict_thresholds_globally_and_per_label() -> None:
    probabilities = np.array([[0.9, 0.4, 0.1], [0.2, 0.6, 0.35]])
    assert predict(probabilities, 0.5).tolist() == [[1, 0, 0], [0, 1, 0]]
    per_label = np.array([0.5, 0.5, 0.3])
    assert predict(probabilities, per_label).tolist() == [[1, 0, 0], [0, 1, 1]]
    # no fallback: an example with nothing over the threshold predicts nothing
    assert predict(probabilities, 0.95).sum() == 0


def test_sweep_and_calibration_pick_the_best_thresholds() -> None:
    gold = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 0], [0, 1, 1]], dtype=float)
    probabilities = np.array(
        [[0.8, 0.1, 0.32], [0.3, 0.7, 0.1], [0.6, 0.2, 0.05], [0.1, 0.9, 0.33]]
    )
    grid = (0.25, 0.5, 0.75)
    swept = sweep(gold, probabilities, NAMES, grid)
    assert set(swept) == set(grid)
    calibration = calibrate(gold, probabilities, NAMES, grid)
    # at 0.25: a predicted for rows 0,1,2 (p 2/3), b for 1,3 (1.0), c for 0,3 (1.0)
    # at 0.5: c is never predicted (f1 0): 0.25 is best overall
    assert swept[0.25].macro_f1 > swept[0.5].macro_f1
    assert calibration.threshold == 0.25
    # per label: a is perfect at 0.5 and 0.75? row2 has 0.6 -> 0.5 perfect, 0.75 misses row 2
    assert calibration.per_label == {"a": 0.5, "b": 0.25, "c": 0.25}


def test_a_label_unseen_in_validation_takes_the_global_threshold() -> None:
    gold = np.array([[1, 0, 0], [0, 1, 0]], dtype=float)
    probabilities = np.array([[0.9, 0.1, 0.8], [0.1, 0.9, 0.2]])
    calibration = calibrate(gold, probabilities, NAMES, (0.5, 0.85))
    assert calibration.per_label["c"] == calibration.threshold


def test_shapes_must_agree() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        score(np.zeros((2, 3)), np.zeros((3, 3)), NAMES)
