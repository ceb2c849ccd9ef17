"""Stage 4, context generation and cleaning: the situation centred on the actor that ends
right before the utterance; then a second call removes clauses that name emotions."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from pydantic import BaseModel, Field

from emopillars.stages.base import (
    ACTOR_VALUES,
    Parsed,
    Reject,
    Row,
    Stage,
    StageContext,
    Step,
    actor_values,
    normalise,
)
from emopillars.stages.gates import debris, too_short


class ContextAnswer(BaseModel):
    context: str = Field(min_length=10, max_length=700)


class GenerateContext(Step):
    call = "context"
    placeholders = ACTOR_VALUES | {"utterance"}
    parser_version = 2  # quality gates
    max_tokens = 300
    answer = ContextAnswer
    columns = (("context_raw", pa.string()),)

    def prompt_values(self, row: Row, ctx: StageContext) -> dict[str, str]:
        return {**actor_values(row), "utterance": row["utterance"]}

    def parse(self, row: Row, answer: ContextAnswer, ctx: StageContext) -> Parsed:
        context = answer.context.strip()
        if _quotes(context, row["utterance"]):
            raise Reject("context_quotes_utterance", context)
        _check_context(context, ctx)
        return Parsed(rows=[{"context_raw": context}])

    def parse_params(self, ctx: StageContext) -> dict[str, Any]:
        return _gate_params(ctx)


class CleanContext(Step):
    call = "clean"
    placeholders = frozenset({"context"})
    parser_version = 2  # quality gates
    max_tokens = 300
    answer = ContextAnswer
    columns = (("context", pa.string()),)

    def prompt_values(self, row: Row, ctx: StageContext) -> dict[str, str]:
        return {"context": row["context_raw"]}

    def parse(self, row: Row, answer: ContextAnswer, ctx: StageContext) -> Parsed:
        context = answer.context.strip()
        _check_context(context, ctx)
        named = ctx.lexicon.found(context)
        if named:
            # Retried: the cleaning call runs again (with another seed), then the row goes.
            raise Reject("context_names_emotion", f"{', '.join(named)}: {context}")
        return Parsed(rows=[{"context": context}])

    def parse_params(self, ctx: StageContext) -> dict[str, Any]:
        return {
            **_gate_params(ctx),
            "emotion_words": ctx.prompt_files_sha256.get("emotion_words.json"),
        }


def _quotes(context: str, utterance: str) -> bool:
    """Whether the context holds the utterance, case and spacing aside:
    `normalise(utterance) in normalise(context)`."""
    quoted = normalise(utterance)
    lowered = context.lower()
    # A quote puts each of the utterance's words (runs without spaces) inside one word of the
    # context, so inside the lowercased context: its longest word rules out nearly every
    # context without splitting the context into words.
    if max(quoted.split(" "), key=len) not in lowered:
        return False
    return quoted in normalise(context)


def _check_context(context: str, ctx: StageContext) -> None:
    gates = ctx.config.gates
    for reason, detail in (
        ("context_debris", debris(context, gates.max_non_letter_share)),
        ("context_too_short", too_short(context, gates.min_context_words)),
    ):
        if detail is not None:
            raise Reject(reason, f"{detail}: {context}")


def _gate_params(ctx: StageContext) -> dict[str, Any]:
    return ctx.config.gates.model_dump(include={"min_context_words", "max_non_letter_share"})


STAGE = Stage(
    name="contexts",
    input_key="utterance_id",
    steps=(GenerateContext(), CleanContext()),
)
