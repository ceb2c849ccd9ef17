"""What a stage is: LLM calls (steps), each building a prompt from a row and parsing the answer.

Stages never open files, call engines or retry: the runner owns that. A step turns one input
row into zero or more output rows, or raises Reject with a reason.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pyarrow as pa
from pydantic import BaseModel

from pipeline.config import RunConfig
from pipeline.prompts import PromptTemplate, load_template
from pipeline.resources import prompts_dir
from pipeline.taxonomy import Taxonomy, load_taxonomy

Row = dict[str, Any]


class Reject(Exception):
    """An unusable answer; `retryable` answers are asked again (with another seed)."""

    def __init__(self, reason: str, detail: str = "", retryable: bool = True) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.retryable = retryable


@dataclass
class Parsed:
    rows: list[Row]
    # Parts of an accepted answer that were left out (a duplicate utterance, an unmapped
    # label): (reason, detail). Recorded in the rejects table, never silently dropped.
    item_rejects: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class StageContext:
    """What every step may read: the config and the prompt folder's contents, loaded once."""

    config: RunConfig
    taxonomy: Taxonomy
    templates: dict[str, PromptTemplate]
    contrasts: str

    @classmethod
    def from_config(cls, config: RunConfig) -> StageContext:
        folder = (config.prompts_dir or prompts_dir()) / config.prompt_version
        if not folder.is_dir():
            raise FileNotFoundError(f"no prompt folder {folder}: check prompt_version/prompts_dir")
        names = ("actors", "utterances", "labels", "context", "clean", "rewrite")
        return cls(
            config=config,
            taxonomy=load_taxonomy(folder),
            templates={name: load_template(folder, name) for name in names},
            contrasts=(folder / "contrasts.txt").read_text(encoding="utf-8").strip(),
        )

    def template(self, name: str) -> PromptTemplate:
        return self.templates[name]


def json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with $refs inlined and titles dropped: grammar compilers and
    small models both do better with one flat, self-contained schema."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(copy.deepcopy(definitions[node["$ref"].split("/")[-1]]))
            return {key: resolve(value) for key, value in node.items() if key != "title"}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


class Step:
    """One LLM call. Subclasses set `call` (the prompt template and token budget name) and
    `answer` (the pydantic model that constrains decoding and validates the answer)."""

    call: ClassVar[str]
    answer: ClassVar[type[BaseModel]]

    def schema(self, ctx: StageContext) -> dict[str, Any]:
        return json_schema(self.answer)

    def prompt_values(self, row: Row, ctx: StageContext) -> dict[str, str]:
        raise NotImplementedError

    def parse(self, row: Row, answer: Any, ctx: StageContext) -> Parsed:
        raise NotImplementedError

    def parse_params(self, ctx: StageContext) -> dict[str, Any]:
        """Settings that change parsing but not the prompt; they join the fingerprint."""
        return {}

    def prompt(self, row: Row, ctx: StageContext) -> str:
        return ctx.template(self.call).render(**self.prompt_values(row, ctx))

    def max_tokens(self, ctx: StageContext) -> int:
        budget: int = getattr(ctx.config.max_tokens, self.call)
        return budget


@dataclass(frozen=True)
class Stage:
    name: str
    input_key: str  # the id column that names an input row (rejects point at it)
    steps: tuple[Step, ...]
    output_schema: pa.Schema


def story_values(row: Row) -> dict[str, str]:
    return {"title": row["title"], "story": row["text"]}


def actor_values(row: Row) -> dict[str, str]:
    return {
        **story_values(row),
        "actor": row["actor"],
        "actor_description": row["actor_description"],
    }


def normalise(text: str) -> str:
    return " ".join(text.lower().split())
