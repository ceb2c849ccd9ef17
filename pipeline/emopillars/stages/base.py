"""What a stage is: LLM calls (steps), each building a prompt from a row and parsing the answer.

Stages never open files, call engines or retry: the runner owns that. A step turns one input
row into zero or more output rows, or raises Reject with a reason. A step owns its whole
contract: its prompt template, token budget, answer model, output columns and parser version;
the Arrow schemas of the stage shards are built from them.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache, cached_property
from typing import Any, ClassVar

import pyarrow as pa
from pydantic import BaseModel

from emopillars.config import ConfigError, RunConfig
from emopillars.hashing import file_hash
from emopillars.resources import prompts_dir
from emopillars.stages.lexicon import EmotionLexicon, load_lexicon
from emopillars.stages.prompts import PromptTemplate, load_template, read_prompt_file
from emopillars.stages.taxonomy import Taxonomy, load_taxonomy

Row = dict[str, Any]
Column = tuple[str, pa.DataType]

# The rows the first stage reads: one per story of the corpus.
STORY = pa.schema([("story_id", pa.string()), ("title", pa.string()), ("text", pa.string())])


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
    prompt_files_sha256: dict[str, str]  # every file of the prompt folder: what the run used
    definitions: str  # the emotion definitions block, rendered once
    lexicon: EmotionLexicon

    @classmethod
    def from_config(cls, config: RunConfig, steps: Iterable[Step]) -> StageContext:
        """Load the prompt folder for these steps; a token budget for a call no step makes,
        or a file of the folder that is missing or wrong (a template with a placeholder its
        step does not provide, synonyms that are not JSON, ...), is a ConfigError before any
        model loads or any stage runs."""
        steps = tuple(steps)
        calls = {step.call for step in steps}
        unknown = sorted(set(config.max_tokens) - calls)
        if unknown:
            raise ConfigError(
                f"max_tokens names unknown calls {unknown}: the calls are {sorted(calls)}"
            )
        folder = (config.prompts_dir or prompts_dir()) / config.prompt_version
        if not folder.is_dir():
            raise ConfigError(f"no prompt folder {folder}: check prompt_version/prompts_dir")
        taxonomy = load_taxonomy(folder)
        return cls(
            config=config,
            taxonomy=taxonomy,
            templates={
                step.call: load_template(folder, step.call, step.placeholders)
                for step in sorted(steps, key=lambda step: step.call)
            },
            contrasts=read_prompt_file(folder / "contrasts.txt").strip(),
            prompt_files_sha256={
                path.name: file_hash(path) for path in sorted(folder.iterdir()) if path.is_file()
            },
            definitions=taxonomy.definitions_block(),
            lexicon=load_lexicon(folder),
        )

    def template(self, name: str) -> PromptTemplate:
        return self.templates[name]


def json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with $refs inlined and titles dropped: grammar compilers and
    small models both do better with one flat, self-contained schema. A copy: steps adjust
    theirs to the config."""
    return copy.deepcopy(_flat_schema(model))


@cache
def _flat_schema(model: type[BaseModel]) -> dict[str, Any]:
    # pydantic takes about a millisecond per model, and every runner asks for each step's.
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
    """One LLM call. A subclass declares its whole contract:

    - `call`: the prompt template's name (prompts/<version>/<call>.txt) and the call's name in
      requests, rejects and `max_tokens`;
    - `placeholders`: the names `prompt_values` returns, which its template may use: a prompt
      folder is checked against them when it is loaded, before any stage runs;
    - `max_tokens`: the default budget of new tokens (the config may override it);
    - `answer`: the pydantic model that constrains decoding and validates the answer;
    - `columns`: the columns each output row gains, exactly the keys `parse` returns;
    - `parser_version`: raise it whenever `parse` changes what it makes of an answer, so that
      finished shards are re-parsed from their kept answers.
    """

    call: ClassVar[str]
    # None: not declared, so a template's names are only checked when a prompt is rendered.
    placeholders: ClassVar[frozenset[str] | None] = None
    max_tokens: ClassVar[int]
    answer: ClassVar[type[BaseModel]]
    columns: ClassVar[tuple[Column, ...]]
    parser_version: ClassVar[int] = 1

    @cached_property
    def request_column(self) -> str:
        """The column naming the request that made each row (its key)."""
        return f"{self.call}_request"

    @cached_property
    def column_names(self) -> frozenset[str]:
        return frozenset(name for name, _ in self.columns)

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
        return "".join(self.prompt_pieces(row, ctx))

    def prompt_pieces(self, row: Row, ctx: StageContext) -> list[str]:
        """The prompt as its template's pieces (stages/prompts.py): joined, `prompt`."""
        return ctx.template(self.call).pieces(self.prompt_values(row, ctx))

    def budget(self, ctx: StageContext) -> int:
        return ctx.config.max_tokens.get(self.call, self.max_tokens)


@dataclass(frozen=True)
class Stage:
    name: str
    input_key: str  # the id column that names an input row (rejects point at it)
    steps: tuple[Step, ...]
    input_schema: pa.Schema = field(default_factory=lambda: pa.schema([]))

    @property
    def output_schema(self) -> pa.Schema:
        """The input's columns, then each step's columns and its request column."""
        schema = self.input_schema
        for step in self.steps:
            for name, kind in (*step.columns, (step.request_column, pa.string())):
                schema = schema.append(pa.field(name, kind))
        return schema


STORY_VALUES = frozenset({"title", "story"})
ACTOR_VALUES = STORY_VALUES | {"actor", "actor_description"}


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
