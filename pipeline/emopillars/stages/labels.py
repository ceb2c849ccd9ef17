"""Stage 3, soft labelling: without the story, the emotions an utterance expresses, each with
an intensity in steps of 0.1; labels at or above the threshold are kept. Off-taxonomy labels
are mapped by the versioned synonym dictionary, and the unmapped ones are counted."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from pydantic import BaseModel, Field, JsonValue, field_validator

from emopillars.stages.base import Parsed, Reject, Row, Stage, StageContext, Step
from emopillars.stages.taxonomy import LABEL_IDS, LABELS

INTENSITIES: list[JsonValue] = [round(step / 10, 1) for step in range(11)]


class EmotionScore(BaseModel):
    # A free string, not an enum: forcing the taxonomy into the grammar would hide what the
    # teacher actually means; the synonym map and the unmapped count keep that visible.
    label: str = Field(min_length=1, max_length=24, examples=list(LABELS))
    intensity: float = Field(json_schema_extra={"enum": INTENSITIES})

    @field_validator("intensity")
    @classmethod
    def _on_the_scale(cls, value: float) -> float:
        if not 0.0 <= value <= 1.0:
            raise ValueError("intensity must lie in 0.0..1.0")
        return round(value, 1)


class LabelsAnswer(BaseModel):
    emotions: list[EmotionScore] = Field(min_length=1, max_length=10)


class SoftLabel(Step):
    call = "labels"
    placeholders = frozenset({"definitions", "contrasts", "intended_emotion", "utterance"})
    parser_version = 2  # intended_in_labels
    max_tokens = 120
    answer = LabelsAnswer
    columns = (
        ("labels", pa.list_(pa.string())),
        ("scores", pa.list_(pa.float64())),
        ("unmapped_labels", pa.list_(pa.string())),
        # Whether the teacher, without the story, finds the emotion the utterance was
        # written for: a per-row measure of how well generation and labelling agree.
        ("intended_in_labels", pa.bool_()),
    )

    def schema(self, ctx: StageContext) -> dict[str, Any]:
        schema = super().schema(ctx)
        schema["properties"]["emotions"]["maxItems"] = ctx.config.max_labels
        return schema

    def prompt_values(self, row: Row, ctx: StageContext) -> dict[str, str]:
        return {
            "definitions": ctx.definitions,
            "contrasts": ctx.contrasts,
            "intended_emotion": row["intended_emotion"],
            "utterance": row["utterance"],
        }

    def parse_params(self, ctx: StageContext) -> dict[str, Any]:
        return {
            "threshold": ctx.config.label_threshold,
            "max_labels": ctx.config.max_labels,
            "synonyms": ctx.taxonomy.synonyms,
            "require_intended_emotion": ctx.config.gates.require_intended_emotion,
        }

    def parse(self, row: Row, answer: LabelsAnswer, ctx: StageContext) -> Parsed:
        scores, unmapped = mapped_scores(answer, ctx)
        kept = {label: s for label, s in scores.items() if s >= ctx.config.label_threshold}
        if not kept:
            # A valid answer that finds every emotion weak: asking again until some label
            # clears the threshold would bias the intensities upwards.
            raise Reject("below_threshold", str(scores), retryable=False)
        ordered = sorted(kept.items(), key=lambda pair: (-pair[1], LABEL_IDS[pair[0]]))
        intended_in_labels = row["intended_emotion"] in kept
        if ctx.config.gates.require_intended_emotion and not intended_in_labels:
            # Final like below_threshold: asking until the teacher agrees would bias it.
            raise Reject("intended_not_labelled", str(scores), retryable=False)
        row_out = {
            "intended_in_labels": intended_in_labels,
            "labels": [label for label, _ in ordered],
            "scores": [score for _, score in ordered],
            "unmapped_labels": unmapped,
        }
        return Parsed(rows=[row_out], item_rejects=[("unmapped_label", u) for u in unmapped])


def mapped_scores(answer: LabelsAnswer, ctx: StageContext) -> tuple[dict[str, float], list[str]]:
    """The answer's labels in the taxonomy (synonyms mapped), each at its highest intensity,
    and the labels that map to none; Reject when no label maps."""
    scores: dict[str, float] = {}
    unmapped: list[str] = []
    for item in answer.emotions[: ctx.config.max_labels]:
        label = ctx.taxonomy.map_label(item.label)
        if label is None:
            unmapped.append(item.label.strip())
            continue
        scores[label] = max(scores.get(label, 0.0), item.intensity)
    if not scores:
        raise Reject("off_taxonomy_only", ", ".join(unmapped))
    return scores, unmapped


STAGE = Stage(name="labels", input_key="utterance_id", steps=(SoftLabel(),))
