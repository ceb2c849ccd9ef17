"""Stage 1, actor extraction: the characters of a story, each with a short description."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from pydantic import BaseModel, Field

from emopillars.stages.base import (
    STORY_VALUES,
    Parsed,
    Reject,
    Row,
    Stage,
    StageContext,
    Step,
    normalise,
    story_values,
)
from emopillars.stages.gates import name_in_story


class Character(BaseModel):
    name: str = Field(min_length=1, max_length=60)
    description: str = Field(min_length=1, max_length=200)


class ActorsAnswer(BaseModel):
    characters: list[Character] = Field(min_length=1, max_length=30)


class ExtractActors(Step):
    call = "actors"
    placeholders = STORY_VALUES
    max_tokens = 400
    parser_version = 2  # quality gates
    answer = ActorsAnswer
    columns = (
        ("actor_id", pa.string()),
        ("actor", pa.string()),
        ("actor_description", pa.string()),
    )

    def schema(self, ctx: StageContext) -> dict[str, Any]:
        schema = super().schema(ctx)
        # The cap lives in the grammar too, so the model stops listing instead of being cut.
        schema["properties"]["characters"]["maxItems"] = ctx.config.max_actors
        return schema

    def prompt_values(self, row: Row, ctx: StageContext) -> dict[str, str]:
        return story_values(row)

    def parse_params(self, ctx: StageContext) -> dict[str, Any]:
        return {"require_actor_in_story": ctx.config.gates.require_actor_in_story}

    def parse(self, row: Row, answer: ActorsAnswer, ctx: StageContext) -> Parsed:
        parsed = Parsed(rows=[])
        seen: set[str] = set()
        for character in answer.characters:
            name = character.name.strip()
            if normalise(name) in seen:
                parsed.item_rejects.append(("duplicate_actor", name))
                continue
            if ctx.config.gates.require_actor_in_story and not name_in_story(name, row["text"]):
                # An invented character (or a chat-template role) would speak for no one.
                parsed.item_rejects.append(("actor_not_in_story", name))
                continue
            if len(parsed.rows) >= ctx.config.max_actors:
                parsed.item_rejects.append(("over_max_actors", name))
                continue
            seen.add(normalise(name))
            parsed.rows.append(
                {
                    "actor_id": f"{row['story_id']}/a{len(parsed.rows):02d}",
                    "actor": name,
                    "actor_description": character.description.strip(),
                }
            )
        if not parsed.rows:
            raise Reject("no_actors")
        return parsed


STAGE = Stage(name="actors", input_key="story_id", steps=(ExtractActors(),))
