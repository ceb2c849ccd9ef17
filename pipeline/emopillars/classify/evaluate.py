"""Score a trained classifier on human-labelled text, or on a run's own test split.

On `synthetic:RUN_DIR` it reports what the paper reports: a context-less model on the test
utterances as generated against the same rows rewritten to need their context, and a
context-aware model on the rewritten utterances, beside a context-less one (`compare`) on the
same rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emopillars.classify.examples import (
    CONFIG_NAMES,
    Examples,
    read_examples,
    require_assembled,
)
from emopillars.classify.gold import DatasetLoader, LabelledTexts, coverage_lines, read_target
from emopillars.classify.metrics import SWEEP, Matrix, Scores, predict, score, sweep
from emopillars.classify.model import Classifier
from emopillars.stages.taxonomy import LABELS

SYNTHETIC = "synthetic:"


class EvaluationError(ValueError):
    """The model and the target do not go together."""


@dataclass(frozen=True)
class Scored:
    """One model's scores on one set of texts."""

    source: str
    scores: Scores
    threshold: float
    sweep: dict[float, Scores]
    per_label_thresholds: Scores | None  # the calibrated per-label thresholds, when they apply

    def summary(self) -> dict[str, Any]:
        return {
            "target": self.source,
            "examples": self.scores.examples,
            "labels_scored": self.scores.labels_scored,
            "threshold": self.threshold,
            "macro_f1": round(self.scores.macro_f1, 4),
            "micro_f1": round(self.scores.micro_f1, 4),
        }

    def as_dict(self) -> dict[str, Any]:
        best = max(self.sweep, key=lambda t: (self.sweep[t].macro_f1, -t))
        return {
            **self.summary(),
            "per_label": {
                name: label.as_dict()
                for name, label in self.scores.per_label.items()
                if label.support or label.precision
            },
            "per_label_thresholds": None
            if self.per_label_thresholds is None
            else {
                "macro_f1": round(self.per_label_thresholds.macro_f1, 4),
                "micro_f1": round(self.per_label_thresholds.micro_f1, 4),
            },
            "sweep": {
                f"{t:.2f}": {"macro_f1": round(s.macro_f1, 4), "micro_f1": round(s.micro_f1, 4)}
                for t, s in self.sweep.items()
            },
            "best_sweep_threshold": best,
        }


def score_probabilities(
    classifier: Classifier, probabilities: Matrix, gold: Matrix, names: tuple[str, ...], source: str
) -> Scored:
    """Scores at the model's calibrated threshold, with its per-label thresholds (in the
    28-label space only), and across the sweep."""
    card = classifier.card
    per_label = None
    if names == LABELS:
        per_label = score(gold, predict(probabilities, card.label_thresholds), names)
    return Scored(
        source=source,
        scores=score(gold, predict(probabilities, card.threshold), names),
        threshold=card.threshold,
        sweep=sweep(gold, probabilities, names, SWEEP),
        per_label_thresholds=per_label,
    )


def score_texts(classifier: Classifier, target: LabelledTexts) -> Scored:
    """A labelled set of single texts. A context-aware model reads each as an utterance with
    an empty context, which is all such a set offers."""
    if classifier.card.config == "context_aware":
        probabilities = classifier.probabilities([""] * len(target), target.texts)
    else:
        probabilities = classifier.probabilities(target.texts)
    return score_probabilities(
        classifier, target.scores_in_space(probabilities), target.gold, target.names, target.source
    )


def score_examples(classifier: Classifier, examples: Examples, source: str) -> Scored:
    probabilities = classifier.probabilities(examples.texts, examples.pairs)
    return score_probabilities(classifier, probabilities, examples.targets, LABELS, source)


def evaluate(
    model_dir: Path,
    target: str,
    label_map: Path | None = None,
    compare: Path | None = None,
    device: str = "auto",
    loader: DatasetLoader | None = None,
) -> dict[str, Any]:
    """The evaluation as one JSON-ready object: the model's scores on `target`, plus the
    paper's comparisons for a `synthetic:` target."""
    classifier = Classifier(model_dir, device)
    header = {"model": str(model_dir), "config": classifier.card.config}
    if not target.startswith(SYNTHETIC):
        if compare is not None:
            raise EvaluationError("--compare applies to synthetic: targets only")
        texts = read_target(target, label_map, loader)
        return {**header, **score_texts(classifier, texts).as_dict(), **texts.coverage()}
    if label_map is not None:
        raise EvaluationError("a synthetic: target has the 28 labels already; drop --label-map")
    run_dir = Path(target.removeprefix(SYNTHETIC))
    config = classifier.card.config
    require_assembled(run_dir, ["context_aware"] if config == "context_aware" else CONFIG_NAMES)
    main = score_examples(
        classifier, read_examples(run_dir, config, "test"), f"{target} ({config} test)"
    )
    report = {**header, **main.as_dict()}
    rewritten_rows = f"{target} (context_aware test)"
    if config == "context_less":
        original = read_examples(
            run_dir, "context_aware", "test", utterance_column="original_utterance"
        )
        rewritten = read_examples(run_dir, "context_aware", "test")
        comparisons = {
            "original_utterances": score_examples(
                classifier, _as_texts(original), f"{rewritten_rows}: original utterances"
            ).summary(),
            "rewritten_utterances": score_examples(
                classifier, _as_texts(rewritten), f"{rewritten_rows}: rewritten utterances"
            ).summary(),
        }
        if compare is not None:
            raise EvaluationError(
                "--compare takes a context-less model beside a context-aware MODEL_DIR"
            )
    else:
        comparisons = {"context_aware_on_rewritten": main.summary()}
        if compare is not None:
            other = Classifier(compare, device)
            if other.card.config != "context_less":
                raise EvaluationError(f"--compare {compare} must be a context-less model")
            rewritten = read_examples(run_dir, "context_aware", "test")
            comparisons["context_less_on_rewritten"] = score_examples(
                other, _as_texts(rewritten), f"{rewritten_rows}: rewritten, no context"
            ).summary()
    return {**report, "comparisons": comparisons}


def _as_texts(examples: Examples) -> Examples:
    """Context-aware rows as a context-less model reads them: the utterance alone."""
    assert examples.pairs is not None
    return Examples(texts=examples.pairs, pairs=None, targets=examples.targets, ids=examples.ids)


def evaluation_table(report: dict[str, Any]) -> str:
    """The evaluation for a terminal."""
    lines = [
        f"{report['model']} ({report['config']}) on {report['target']}: "
        f"{report['examples']} examples, {report['labels_scored']} labels present",
        f"at the calibrated threshold {report['threshold']:.2f}: "
        f"macro-F1 {report['macro_f1']:.4f}, micro-F1 {report['micro_f1']:.4f}",
    ]
    if report["per_label_thresholds"] is not None:
        per_label = report["per_label_thresholds"]
        lines.append(
            f"at the calibrated per-label thresholds: macro-F1 {per_label['macro_f1']:.4f}, "
            f"micro-F1 {per_label['micro_f1']:.4f}"
        )
    lines += coverage_lines(report)
    best = report["best_sweep_threshold"]
    best_scores = report["sweep"][f"{best:.2f}"]
    lines.append(
        f"best of the sweep (chosen on this set, optimistic): {best:.2f}, "
        f"macro-F1 {best_scores['macro_f1']:.4f}"
    )
    lines += ["", f"{'label':<16}{'precision':>10}{'recall':>8}{'f1':>8}{'support':>9}"]
    for name, label in report["per_label"].items():
        lines.append(
            f"{name:<16}{label['precision']:>10.3f}{label['recall']:>8.3f}"
            f"{label['f1']:>8.3f}{label['support']:>9}"
        )
    comparisons = report.get("comparisons")
    if comparisons:
        lines += ["", "comparisons (the paper's):"]
        for name, summary in comparisons.items():
            lines.append(
                f"  {name:<28} macro-F1 {summary['macro_f1']:.4f}  micro-F1 "
                f"{summary['micro_f1']:.4f}  ({summary['examples']} examples)"
            )
    return "\n".join(lines)
