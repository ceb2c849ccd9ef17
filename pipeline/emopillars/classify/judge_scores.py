"""How good the teacher is as an annotator: macro-F1 of its labels against gold labels at
each intensity threshold, and the threshold to recommend for `label_threshold`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from emopillars.classify.gold import LabelledTexts
from emopillars.classify.metrics import Matrix, Scores, sweep

# The intensities the teacher answers in are steps of 0.1; 0.0 would predict every label it
# names at all, and 1.0 only the strongest, so both ends are left out.
THRESHOLDS: tuple[float, ...] = tuple(round(step / 10, 1) for step in range(1, 10))


@dataclass(frozen=True)
class TeacherScores:
    by_threshold: dict[float, Scores]
    recommended: float

    @property
    def best(self) -> Scores:
        return self.by_threshold[self.recommended]


def teacher_scores(gold: LabelledTexts, intensities: Matrix) -> TeacherScores:
    """Scores of the teacher's (sentences, 28) intensities, a label predicted at or above
    each threshold; in the gold set's label space (a group takes its best member's)."""
    scored = sweep(gold.gold, gold.scores_in_space(intensities), gold.names, THRESHOLDS)
    # A tie goes to the lower threshold, as calibration's does: at equal macro-F1 the run
    # keeps more labels per utterance, and so more of what the teacher said.
    recommended = max(THRESHOLDS, key=lambda t: (scored[t].macro_f1, -t))
    return TeacherScores(by_threshold=scored, recommended=recommended)


def threshold_key(threshold: float) -> str:
    return f"{threshold:.1f}"


def figures(scores: TeacherScores, gold: LabelledTexts) -> dict[str, Any]:
    """judge.json's figures: the sweep, the recommendation and the scores behind it."""
    best = scores.best
    return {
        "thresholds": {
            threshold_key(t): round(s.macro_f1, 4) for t, s in scores.by_threshold.items()
        },
        "micro_f1": {
            threshold_key(t): round(s.micro_f1, 4) for t, s in scores.by_threshold.items()
        },
        "recommended_threshold": scores.recommended,
        "macro_f1": round(best.macro_f1, 4),
        "per_label": {name: label.as_dict() for name, label in best.per_label.items()},
        "labels": list(gold.names),
        "labels_scored": best.labels_scored,
        "sentences": len(gold),
    }
