"""Stage 5, context-importance rewriting: the utterance made less explicit, so that its
emotions can only be read with the context."""

from __future__ import annotations

import pyarrow as pa
from pydantic import BaseModel, Field

from emopillars.stages.base import (
    Parsed,
    Reject,
    Row,
    Stage,
    StageContext,
    Step,
    actor_values,
    normalise,
)


class RewriteAnswer(BaseModel):
    utterance: str = Field(min_length=2, max_length=220)


class RewriteUtterance(Step):
    call = "rewrite"
    max_tokens = 300
    answer = RewriteAnswer
    columns = (("rewritten_utterance", pa.string()),)

    def prompt_values(self, row: Row, ctx: StageContext) -> dict[str, str]:
        return {
            **actor_values(row),
            "context": row["context"],
            "utterance": row["utterance"],
            "labels": ", ".join(row["labels"]),
        }

    def parse(self, row: Row, answer: RewriteAnswer, ctx: StageContext) -> Parsed:
        rewritten = answer.utterance.strip()
        if normalise(rewritten) == normalise(row["utterance"]):
            raise Reject("unchanged", rewritten)
        return Parsed(rows=[{"rewritten_utterance": rewritten}])


STAGE = Stage(
    name="rewrites",
    input_key="utterance_id",
    steps=(RewriteUtterance(),),
)
