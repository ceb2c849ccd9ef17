"""Story corpora: JSONL, CSV, Parquet or a folder of .txt files, with a field mapping.

A bad row (undecodable bytes, malformed JSON, a missing field, a value that is not text,
chat-template markup, control characters, empty text, a duplicate id, text too long for the
model) becomes a reject with a reason; loading goes on. A field mapping that matches no
column of the corpus is a CorpusError naming the columns there are.

Story text goes into prompts verbatim, and every engine renders prompts through a chat
template whose tokenizer turns markup such as `<|im_start|>` into real control tokens: a story
holding it could open turns of its own. Such rows are rejected (`special_tokens`).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from emopillars.config import RunConfig


class CorpusError(ValueError):
    """The corpus as a whole cannot be read; the message says why."""


@dataclass(frozen=True)
class Story:
    story_id: str
    title: str
    text: str


@dataclass(frozen=True)
class CorpusReject:
    location: str  # "line 7", "row 12" or a file name
    story_id: str | None
    reason: str
    detail: str


@dataclass(frozen=True)
class FieldMap:
    id: str = "id"
    title: str = "title"
    text: str = "text"


_RawRow = tuple[str, "dict[str, Any] | CorpusReject"]

# Chat-control markup of the common template families. Tokenizers match special tokens as
# exact strings, so these patterns are case-sensitive.
SPECIAL_TOKENS = re.compile(
    r"<[|\uff5c][^<>|\uff5c\s]{1,40}[|\uff5c]>"  # ChatML, Llama 3, Phi, Qwen; DeepSeek's ｜
    r"|<[a-z]+(?:_[a-z]+)+>"  # Gemma <start_of_turn>, StarCoder/SmolLM <file_sep>, <gh_stars>
    r"|</?s>|<<SYS>>|<</SYS>>|\[/?INST\]|\[/?SYSTEM_PROMPT\]|\[/?AVAILABLE_TOOLS\]"
    r"|\[/?TOOL_RESULTS\]|\[TOOL_CALLS\]"  # Llama 2, Mistral
    r"|<(?:bos|eos|pad|unk|mask|reponame|filename)>"
)
# C0 and C1 control characters and DEL. In text and titles, the whitespace among them
# separates words and the rest are dropped; NUL rejects the row; an id may hold none.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# What str.isspace() calls whitespace: re's \s on str patterns is the same test.
_WHITESPACE = re.compile(r"\s")
_FLAGS = {"id": "--id-field", "title": "--title-field", "text": "--text-field"}


def detect_format(path: Path) -> str:
    if path.is_dir():
        return "txt"
    suffix = path.suffix.lower()
    formats = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
    if suffix not in formats:
        raise CorpusError(
            f"cannot tell the format of {path}: use .jsonl, .csv, .parquet or a folder of "
            ".txt files, or pass --corpus-format"
        )
    return formats[suffix]


def _check_columns(path: Path, columns: Iterable[str], fields: FieldMap, lacks: str) -> None:
    """Raise when the field mapping names columns the corpus lacks: the id and text, and the
    title when it is mapped to a name other than the default (a corpus may have no titles)."""
    present = set(columns)
    wanted = {"id": fields.id, "text": fields.text}
    if fields.title != FieldMap.title:
        wanted["title"] = fields.title
    missing = [
        f"{name!r} (set {_FLAGS[key]})" for key, name in wanted.items() if name not in present
    ]
    if missing:
        raise CorpusError(
            f"corpus {path}: {lacks} {' or '.join(missing)}; the fields it has are "
            f"{sorted(present)}"
        )


def _jsonl_rows(path: Path) -> Iterator[_RawRow]:
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            location = f"line {number}"
            if not raw.strip():
                continue
            try:
                value = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as error:
                yield location, CorpusReject(location, None, "undecodable", str(error))
                continue
            except json.JSONDecodeError as error:
                yield location, CorpusReject(location, None, "malformed_row", str(error))
                continue
            if not isinstance(value, dict):
                yield location, CorpusReject(location, None, "malformed_row", "not an object")
                continue
            yield location, value


def _csv_rows(path: Path, fields: FieldMap) -> Iterator[_RawRow]:
    # surrogateescape keeps undecodable bytes as lone surrogates, so one bad row is found
    # and rejected instead of failing the whole file.
    text = path.read_bytes().decode("utf-8-sig", errors="surrogateescape")
    # A short row's missing cells read as empty; a long row's extra cells land under None.
    reader = csv.DictReader(io.StringIO(text, newline=""), restval="")
    _check_columns(path, reader.fieldnames or [], fields, "its header has no field")
    for number, row in enumerate(reader, start=2):
        location = f"line {number}"
        if None in row:
            detail = f"more cells than the header's {len(reader.fieldnames or [])}"
            yield location, CorpusReject(location, None, "malformed_row", detail)
            continue
        if any(_has_surrogates(str(value)) for value in row.values()):
            yield location, CorpusReject(location, None, "undecodable", "invalid UTF-8 bytes")
            continue
        yield location, dict(row)


def _parquet_rows(path: Path, fields: FieldMap) -> Iterator[_RawRow]:
    table = pq.read_table(path)
    _check_columns(path, table.column_names, fields, "it has no column")
    for number, row in enumerate(table.to_pylist()):
        location = f"row {number}"
        decoded: dict[str, Any] = {}
        try:
            for key, value in row.items():
                decoded[key] = value.decode("utf-8") if isinstance(value, bytes) else value
        except UnicodeDecodeError as error:
            yield location, CorpusReject(location, None, "undecodable", str(error))
            continue
        yield location, decoded


def _txt_rows(folder: Path, fields: FieldMap) -> Iterator[_RawRow]:
    files = sorted(folder.glob("*.txt"))
    if not files:
        raise CorpusError(f"{folder} holds no .txt files")
    for file in files:
        try:
            text = file.read_bytes().decode("utf-8")
        except UnicodeDecodeError as error:
            yield file.name, CorpusReject(file.name, file.stem, "undecodable", str(error))
            continue
        yield file.name, {fields.id: file.stem, fields.title: file.stem, fields.text: text}


def _has_surrogates(value: str) -> bool:
    return any("\udc80" <= char <= "\udcff" for char in value)


def load_corpus(
    path: Path, corpus_format: str, fields: FieldMap, max_chars: int
) -> tuple[list[Story], list[CorpusReject]]:
    if not path.exists():
        raise CorpusError(f"corpus {path} does not exist")
    kind = detect_format(path) if corpus_format == "auto" else corpus_format
    readers = {
        "jsonl": lambda: _jsonl_rows(path),
        "csv": lambda: _csv_rows(path, fields),
        "parquet": lambda: _parquet_rows(path, fields),
        "txt": lambda: _txt_rows(path, fields),
    }
    stories: list[Story] = []
    rejects: list[CorpusReject] = []
    seen: set[str] = set()
    keys: set[str] = set()  # every field of every row, for a JSONL file's mapping check
    for location, row in readers[kind]():
        if isinstance(row, CorpusReject):
            rejects.append(row)
            continue
        keys.update(str(key) for key in row)
        outcome = _story(location, row, fields, max_chars, seen)
        if isinstance(outcome, CorpusReject):
            rejects.append(outcome)
        else:
            seen.add(outcome.story_id)
            stories.append(outcome)
    if not stories and not rejects:
        raise CorpusError(f"corpus {path} is empty")
    if kind == "jsonl" and keys:
        _check_columns(path, keys, fields, "no line has the field")
    return stories, rejects


def _story(
    location: str, row: dict[str, Any], fields: FieldMap, max_chars: int, seen: set[str]
) -> Story | CorpusReject:
    for key, name in (("id", fields.id), ("text", fields.text)):
        if name not in row:
            detail = f"no field {name!r}; found {sorted(map(str, row))} (map it with {_FLAGS[key]})"
            return CorpusReject(location, None, "missing_field", detail)
    # An integer id (JSON, Parquet) is taken as its decimal text; any other non-string is not.
    raw_id = row[fields.id]
    if isinstance(raw_id, int) and not isinstance(raw_id, bool):
        raw_id = str(raw_id)
    raw_title = row.get(fields.title)  # absent or null: the id stands in
    for key, value in (("id", raw_id), ("text", row[fields.text]), ("title", raw_title)):
        if not isinstance(value, str) and not (key == "title" and value is None):
            detail = f"the {key} field {getattr(fields, key)!r} holds {_kind(value)}"
            return CorpusReject(location, None, "not_text", detail)
    story_id = raw_id.strip()
    if _CONTROL.search(story_id):
        detail = f"the id holds {_found(_CONTROL.findall(story_id))}"
        return CorpusReject(location, None, "control_characters", detail)
    if not story_id:
        return CorpusReject(location, None, "missing_id", "empty id")
    for key, value in (("text", row[fields.text]), ("title", raw_title or "")):
        if "\x00" in value:
            return CorpusReject(location, story_id, "control_characters", f"NUL in the {key}")
    text = _clean(row[fields.text])
    if not text:
        return CorpusReject(location, story_id, "empty_text", "")
    title = _clean(raw_title or "") or story_id
    for key, value in (("id", story_id), ("title", title), ("text", text)):
        markup = SPECIAL_TOKENS.findall(value)
        if markup:
            detail = f"chat-template markup in the {key}: {_found(markup)}"
            return CorpusReject(location, story_id, "special_tokens", detail)
    if story_id in seen:
        return CorpusReject(
            location, story_id, "duplicate_id", "the first row with this id is kept"
        )
    if len(text) > max_chars:
        detail = f"{len(text)} characters > max_story_chars {max_chars}"
        return CorpusReject(location, story_id, "too_long", detail)
    return Story(story_id=story_id, title=title, text=text)


def _clean(value: str) -> str:
    """Whitespace runs (line breaks and tabs among them) as one space; other control
    characters dropped."""
    spaced = _WHITESPACE.sub(" ", value)
    return " ".join(_CONTROL.sub("", spaced).split())


def _kind(value: Any) -> str:
    return "null" if value is None else f"a {type(value).__name__} ({str(value)[:40]!r})"


def _found(items: list[str]) -> str:
    return ", ".join(repr(item) for item in dict.fromkeys(items))


def fields_from(config: RunConfig) -> FieldMap:
    return FieldMap(id=config.id_field, title=config.title_field, text=config.text_field)
