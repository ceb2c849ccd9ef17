"""The teacher as an annotator: the labelling call on a human-labelled sentence, without an
intended emotion (prompts/<version>/judge.txt).

Its answer model and label mapping are the labels stage's, so the judge measures the same
call a run makes. Unlike that stage it keeps every mapped label with its intensity and applies
no threshold: one answer then scores every threshold the judge sweeps.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from emopillars.stages.base import Parsed, Row, Stage, StageContext, Step
from emopillars.stages.labels import LabelsAnswer, mapped_scores
from emopillars.stages.taxonomy import LABEL_IDS

SENTENCES = "sentences"  # the judge folder's input "stage": sentence shards
SENTENCE = pa.schema([("sentence_id", pa.string()), ("text", pa.string())])


class JudgeLabel(Step):
    call = "judge"
    placeholders = frozenset({"definitions", "contrasts", "text"})
    max_tokens = 120  # the labels call's budget: the answers have the same form
    answer = LabelsAnswer
    columns = (
        ("labels", pa.list_(pa.string())),
        ("scores", pa.list_(pa.float64())),
        ("unmapped_labels", pa.list_(pa.string())),
    )

    def schema(self, ctx: StageContext) -> dict[str, Any]:
        schema = super().schema(ctx)
        schema["properties"]["emotions"]["maxItems"] = ctx.config.max_labels
        return schema

    def budget(self, ctx: StageContext) -> int:
        # A budget set for the labels call applies here too, unless the judge has its own:
        # the judge should measure the call as the run is configured to make it.
        budgets = ctx.config.max_tokens
        return budgets.get(self.call, budgets.get("labels", self.max_tokens))

    def prompt_values(self, row: Row, ctx: StageContext) -> dict[str, str]:
        return {"definitions": ctx.definitions, "contrasts": ctx.contrasts, "text": row["text"]}

    def parse_params(self, ctx: StageContext) -> dict[str, Any]:
        return {"max_labels": ctx.config.max_labels, "synonyms": ctx.taxonomy.synonyms}

    def parse(self, row: Row, answer: LabelsAnswer, ctx: StageContext) -> Parsed:
        scores, unmapped = mapped_scores(answer, ctx)
        ordered = sorted(scores.items(), key=lambda pair: (-pair[1], LABEL_IDS[pair[0]]))
        row_out = {
            "labels": [label for label, _ in ordered],
            "scores": [score for _, score in ordered],
            "unmapped_labels": unmapped,
        }
        return Parsed(rows=[row_out], item_rejects=[("unmapped_label", u) for u in unmapped])


JUDGE_STEP = JudgeLabel()
STAGE = Stage(name="judge", input_key="sentence_id", steps=(JUDGE_STEP,), input_schema=SENTENCE)
