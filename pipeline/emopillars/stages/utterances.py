"""Stage 2, multi-utterance generation: per actor, one request for utterances with distinct
non-neutral emotions plus neutral ones, with the emotion definitions in the prompt."""

from __future__ import annotations

import random
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, Field, field_validator

from emopillars.hashing import stable_hash
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
from emopillars.stages.gates import debris, jaccard, names_only_emotion, shared_run, too_short
from emopillars.stages.lexicon import word_set
from emopillars.stages.taxonomy import EMOTIONS, LABELS, NEUTRAL


class Utterance(BaseModel):
    emotion: str = Field(json_schema_extra={"enum": list(LABELS)})
    text: str = Field(min_length=12, max_length=220)

    @field_validator("emotion")
    @classmethod
    def _in_taxonomy(cls, value: str) -> str:
        if value not in LABELS:
            raise ValueError(f"{value!r} is not a GoEmotions label")
        return value


class UtterancesAnswer(BaseModel):
    utterances: list[Utterance] = Field(min_length=1, max_length=40)


def assigned_emotions(actor_id: str, ctx: StageContext) -> list[str]:
    """The emotions one actor is asked for: distinct non-neutral ones drawn per actor (so the
    corpus covers all 27 evenly in expectation), then the neutral ones."""
    rng = random.Random(stable_hash([ctx.config.seed, actor_id]))
    chosen = rng.sample(EMOTIONS, ctx.config.emotions_per_actor)
    return chosen + [NEUTRAL] * ctx.config.neutral_per_actor


class GenerateUtterances(Step):
    call = "utterances"
    placeholders = ACTOR_VALUES | {"definitions", "contrasts", "emotions"}
    parser_version = 2  # quality gates
    # The paper's 500 were for plain text; JSON keys and quotes cost tokens too.
    max_tokens = 700
    answer = UtterancesAnswer
    columns = (
        ("utterance_id", pa.string()),
        ("intended_emotion", pa.string()),
        ("utterance", pa.string()),
    )

    def schema(self, ctx: StageContext) -> dict[str, Any]:
        schema = super().schema(ctx)
        count = ctx.config.emotions_per_actor + ctx.config.neutral_per_actor
        schema["properties"]["utterances"].update(minItems=count, maxItems=count)
        return schema

    def prompt_values(self, row: Row, ctx: StageContext) -> dict[str, str]:
        return {
            **actor_values(row),
            "definitions": ctx.definitions,
            "contrasts": ctx.contrasts,
            "emotions": ", ".join(assigned_emotions(row["actor_id"], ctx)),
        }

    def parse_params(self, ctx: StageContext) -> dict[str, Any]:
        gates = ctx.config.gates
        return {
            "gates": gates.model_dump(
                include={
                    "min_utterance_words",
                    "max_non_letter_share",
                    "story_copy_words",
                    "near_duplicate_similarity",
                }
            ),
            "emotion_words": ctx.prompt_files_sha256.get("emotion_words.json"),
        }

    def parse(self, row: Row, answer: UtterancesAnswer, ctx: StageContext) -> Parsed:
        parsed = Parsed(rows=[])
        near_duplicate = ctx.config.gates.near_duplicate_similarity
        seen_texts: set[str] = set()
        seen_emotions: set[str] = set()
        kept: list[tuple[str, frozenset[str]]] = []  # text, its word set
        for item in answer.utterances:
            text = item.text.strip()
            failed = _gate(text, row, ctx)
            if failed is not None:
                reason, detail = failed
                parsed.item_rejects.append((reason, f"{detail}: {text}"))
                continue
            normalised = normalise(text)
            if normalised in seen_texts:
                parsed.item_rejects.append(("duplicate_utterance", text))
                continue
            text_words = word_set(text)
            similar = next(
                (other for other, seen in kept if jaccard(text_words, seen) >= near_duplicate),
                None,
            )
            if similar is not None:
                parsed.item_rejects.append(("near_duplicate_utterance", f"{text} ~ {similar}"))
                continue
            if item.emotion != NEUTRAL and item.emotion in seen_emotions:
                parsed.item_rejects.append(("duplicate_emotion", f"{item.emotion}: {text}"))
                continue
            seen_texts.add(normalised)
            seen_emotions.add(item.emotion)
            kept.append((text, text_words))
            parsed.rows.append(
                {
                    "utterance_id": f"{row['actor_id']}/u{len(parsed.rows):02d}",
                    "intended_emotion": item.emotion,
                    "utterance": text,
                }
            )
        if not parsed.rows:
            raise Reject("no_utterances")
        return parsed


def _gate(text: str, row: Row, ctx: StageContext) -> tuple[str, str] | None:
    """The first quality gate an utterance fails, as (reason, detail)."""
    gates = ctx.config.gates
    for reason, detail in (
        ("utterance_debris", debris(text, gates.max_non_letter_share)),
        ("utterance_too_short", too_short(text, gates.min_utterance_words)),
        ("utterance_names_emotion", names_only_emotion(text, ctx.lexicon)),
        ("utterance_copies_story", shared_run(text, row["text"], gates.story_copy_words)),
    ):
        if detail is not None:
            return reason, detail
    return None


STAGE = Stage(
    name="utterances",
    input_key="actor_id",
    steps=(GenerateUtterances(),),
)
