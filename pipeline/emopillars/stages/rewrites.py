"""Stage 5, context-importance rewriting: the utterance made less explicit, so that its
emotions can only be read with the context."""

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
from emopillars.stages.gates import debris, length_ratio, too_short


class RewriteAnswer(BaseModel):
    utterance: str = Field(min_length=2, max_length=220)


class RewriteUtterance(Step):
    call = "rewrite"
    placeholders = ACTOR_VALUES | {"context", "utterance", "labels"}
    parser_version = 2  # quality gates
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
        rewritten, original = answer.utterance.strip(), row["utterance"]
        if normalise(rewritten) == normalise(original):
            raise Reject("unchanged", rewritten)
        gates = ctx.config.gates
        ratio = length_ratio(rewritten, original)
        checks = (
            ("rewrite_debris", debris(rewritten, gates.max_non_letter_share)),
            ("rewrite_too_short", too_short(rewritten, gates.min_rewrite_words)),
            (
                "rewrite_length_ratio",
                None
                if gates.min_rewrite_ratio <= ratio <= gates.max_rewrite_ratio
                else f"{ratio:.2f} times the original's words",
            ),
            (
                # The rewrite exists to make the emotions less explicit, never more.
                "rewrite_adds_emotion_words",
                None
                if ctx.lexicon.count(rewritten) <= ctx.lexicon.count(original)
                else ", ".join(ctx.lexicon.found(rewritten)),
            ),
        )
        for reason, detail in checks:
            if detail is not None:
                raise Reject(reason, f"{detail}: {rewritten}")
        return Parsed(rows=[{"rewritten_utterance": rewritten}])

    def parse_params(self, ctx: StageContext) -> dict[str, Any]:
        return {
            "gates": ctx.config.gates.model_dump(
                include={
                    "min_rewrite_words",
                    "min_rewrite_ratio",
                    "max_rewrite_ratio",
                    "max_non_letter_share",
                }
            ),
            "emotion_words": ctx.prompt_files_sha256.get("emotion_words.json"),
        }


STAGE = Stage(
    name="rewrites",
    input_key="utterance_id",
    steps=(RewriteUtterance(),),
)
