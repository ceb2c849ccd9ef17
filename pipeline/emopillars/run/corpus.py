"""Story corpora: JSONL, CSV, Parquet or a folder of .txt files, with a field mapping.

A bad row (undecodable bytes, malformed JSON, a missing field, empty text, a duplicate id,
text too long for the model) becomes a reject with a reason; loading goes on.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
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


def _csv_rows(path: Path) -> Iterator[_RawRow]:
    # surrogateescape keeps undecodable bytes as lone surrogates, so one bad row is found
    # and rejected instead of failing the whole file.
    text = path.read_bytes().decode("utf-8-sig", errors="surrogateescape")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    for number, row in enumerate(reader, start=2):
        location = f"line {number}"
        if any(_has_surrogates(str(value)) for value in row.values()):
            yield location, CorpusReject(location, None, "undecodable", "invalid UTF-8 bytes")
            continue
        yield location, dict(row)


def _parquet_rows(path: Path) -> Iterator[_RawRow]:
    for number, row in enumerate(pq.read_table(path).to_pylist()):
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
        "csv": lambda: _csv_rows(path),
        "parquet": lambda: _parquet_rows(path),
        "txt": lambda: _txt_rows(path, fields),
    }
    stories: list[Story] = []
    rejects: list[CorpusReject] = []
    seen: set[str] = set()
    for location, row in readers[kind]():
        if isinstance(row, CorpusReject):
            rejects.append(row)
            continue
        outcome = _story(location, row, fields, max_chars, seen)
        if isinstance(outcome, CorpusReject):
            rejects.append(outcome)
        else:
            seen.add(outcome.story_id)
            stories.append(outcome)
    if not stories and not rejects:
        raise CorpusError(f"corpus {path} is empty")
    return stories, rejects


def _story(
    location: str, row: dict[str, Any], fields: FieldMap, max_chars: int, seen: set[str]
) -> Story | CorpusReject:
    for name in (fields.id, fields.text):
        if name not in row:
            flag = "--id-field" if name == fields.id else "--text-field"
            detail = f"no field {name!r}; found {sorted(row)} (map fields with {flag})"
            return CorpusReject(location, None, "missing_field", detail)
    story_id = str(row[fields.id]).strip() if row[fields.id] is not None else ""
    if not story_id:
        return CorpusReject(location, None, "missing_id", "empty id")
    text = " ".join(str(row[fields.text] or "").split())
    if not text:
        return CorpusReject(location, story_id, "empty_text", "")
    if story_id in seen:
        return CorpusReject(
            location, story_id, "duplicate_id", "the first row with this id is kept"
        )
    if len(text) > max_chars:
        detail = f"{len(text)} characters > max_story_chars {max_chars}"
        return CorpusReject(location, story_id, "too_long", detail)
    title = str(row.get(fields.title) or story_id).strip()
    return Story(story_id=story_id, title=title, text=text)


def fields_from(config: RunConfig) -> FieldMap:
    return FieldMap(id=config.id_field, title=config.title_field, text=config.text_field)
