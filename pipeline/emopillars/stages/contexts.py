"""Stage 4, context generation and cleaning: the situation centred on the actor that ends
right before the utterance; then a second call removes clauses that name emotions."""

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


class ContextAnswer(BaseModel):
    context: str = Field(min_length=10, max_length=700)


class GenerateContext(Step):
    call = "context"
    max_tokens = 300
    answer = ContextAnswer
    columns = (("context_raw", pa.string()),)

    def prompt_values(self, row: Row, ctx: StageContext) -> dict[str, str]:
        return {**actor_values(row), "utterance": row["utterance"]}

    def parse(self, row: Row, answer: ContextAnswer, ctx: StageContext) -> Parsed:
        context = answer.context.strip()
        if normalise(row["utterance"]) in normalise(context):
            raise Reject("context_quotes_utterance", context)
        return Parsed(rows=[{"context_raw": context}])


class CleanContext(Step):
    call = "clean"
    max_tokens = 300
    answer = ContextAnswer
    columns = (("context", pa.string()),)

    def prompt_values(self, row: Row, ctx: StageContext) -> dict[str, str]:
        return {"context": row["context_raw"]}

    def parse(self, row: Row, answer: ContextAnswer, ctx: StageContext) -> Parsed:
        return Parsed(rows=[{"context": answer.context.strip()}])


STAGE = Stage(
    name="contexts",
    input_key="utterance_id",
    steps=(GenerateContext(), CleanContext()),
)
