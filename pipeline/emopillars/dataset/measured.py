"""Scores attached to a run: what `evaluate --attach` and `judge-teacher --attach` measured,
kept in RUN_DIR/evaluations/ (beside the dataset, not in it: attaching a score changes no
dataset file), and shown by `emopillars report` and on the dataset card."""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from emopillars.run.storage import write_json

FOLDER = "evaluations"
log = logging.getLogger("emopillars")


class Measurement(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["evaluate", "judge-teacher"]
    subject: str  # the classifier folder's name, or the teacher (engine and model)
    target: str
    examples: int
    macro_f1: float
    micro_f1: float | None = None
    threshold: float  # the calibrated one, or the teacher's recommended label_threshold
    # The paper's synthetic comparisons, by name: their macro-F1.
    comparisons: dict[str, float] = Field(default_factory=dict)
    measured_at: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat())


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:80] or "target"


def attach(run_dir: Path, measurement: Measurement) -> Path:
    """Keep `measurement` with the run; the latest of a (kind, subject, target) replaces the
    one before."""
    if not (run_dir / "run.json").is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder (no run.json): check --attach")
    target = measurement.target.rsplit("/", 1)[-1]  # a file's name, not its whole path
    name = f"{measurement.kind}--{_slug(measurement.subject)}--{_slug(target)}.json"
    path = run_dir / FOLDER / name
    write_json(path, measurement.model_dump(mode="json"))
    return path


def from_evaluation(report: dict[str, Any]) -> Measurement:
    comparisons = {
        name: float(summary["macro_f1"]) for name, summary in report.get("comparisons", {}).items()
    }
    return Measurement(
        kind="evaluate",
        subject=Path(report["model"]).name,
        target=report["target"],
        examples=report["examples"],
        macro_f1=report["macro_f1"],
        micro_f1=report["micro_f1"],
        threshold=report["threshold"],
        comparisons=comparisons,
    )


def read_attached(run_dir: Path) -> list[Measurement]:
    """Every measurement attached to the run, oldest first. An unreadable file is named in a
    warning and left out: a half-edited file must not stop a report."""
    folder = run_dir / FOLDER
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.glob("*.json")):
        try:
            found.append(Measurement.model_validate(json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, ValueError, ValidationError) as error:
            log.warning("skipping %s, which is not a measurement: %s", path, error)
    return sorted(found, key=lambda m: m.measured_at)


def measurement_rows(measurements: list[Measurement]) -> list[tuple[str, str, str, str, str]]:
    """(what, of, on, macro-F1, details) per measurement, for a table."""
    rows = []
    for m in measurements:
        what = "classifier" if m.kind == "evaluate" else "teacher as annotator"
        details = (
            f"threshold {m.threshold:.2f}"
            if m.kind == "evaluate"
            else f"best label_threshold {m.threshold:.1f}"
        )
        if m.comparisons:
            details += "; " + ", ".join(f"{k} {v:.3f}" for k, v in m.comparisons.items())
        rows.append((what, m.subject, f"{m.target} ({m.examples})", f"{m.macro_f1:.3f}", details))
    return rows


def card_section(measurements: list[Measurement]) -> list[str]:
    """The card's "Measured" section: markdown lines (none without measurements)."""
    if not measurements:
        return []
    lines = [
        "## Measured",
        "",
        "Scores attached to this run with `emopillars evaluate --attach` (classifiers trained on "
        "this data) and `emopillars judge-teacher --attach` (the teacher against human labels). "
        "Macro-F1 averages over the labels present in each test set.",
        "",
        "| what | of | on (examples) | macro-F1 | details |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {' | '.join(row)} |" for row in measurement_rows(measurements)]
    return [*lines, ""]


def measured_table(measurements: list[Measurement]) -> str:
    """The attached scores for a terminal (empty without any)."""
    if not measurements:
        return ""
    header = ("what", "of", "on (examples)", "macro-F1", "details")
    rows = [header, *measurement_rows(measurements)]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["measured (attached with evaluate/judge-teacher --attach):"]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)]
        lines.append("  " + "  ".join([*cells, row[4]]))
    return "\n".join(lines)
