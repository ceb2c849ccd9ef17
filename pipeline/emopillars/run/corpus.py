"""Story corpora: JSONL, CSV, Parquet or a folder of .txt files, with a field mapping.

A bad row (undecodable bytes, malformed JSON, a missing field, a value that is not text,
chat-template markup, control characters, empty text, a duplicate id, text too long for the
model; in a folder of .txt files, an entry that is no .txt file) becomes a reject with a
reason; loading goes on. A field mapping that matches no column of the corpus, a text file
that is not UTF-8 (UTF-16, say) and a Parquet file that cannot be read are CorpusErrors.

Story text goes into prompts verbatim, and every engine renders prompts through a chat
template whose tokenizer turns markup such as `<|im_start|>` into real control tokens: a story
holding it could open turns of its own. Such rows are rejected (`special_tokens`).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from emopillars.config import RunConfig
from emopillars.messages import first_line


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
# Byte-order marks of the encodings a spreadsheet or editor may save "Unicode" text in.
# UTF-32 LE's starts with UTF-16 LE's, so it is tried first.
_FOREIGN_BOMS = {
    codecs.BOM_UTF32_LE: "UTF-32",
    codecs.BOM_UTF32_BE: "UTF-32",
    codecs.BOM_UTF16_LE: "UTF-16",
    codecs.BOM_UTF16_BE: "UTF-16",
}
_SNIFF_BYTES = 4096
# A JSONL line or a .txt file longer than this is a `too_long` reject, found without reading
# it whole: a file with no line breaks (a JSON array saved on one line, a dump) would
# otherwise be read into memory at once. Raised where max_story_chars would allow more (a
# character takes at most 12 bytes, JSON-escaped), so it only ever stops what is no story.
_MAX_ROW_BYTES = 64 << 20


def _row_limit(max_chars: int) -> int:
    return max(_MAX_ROW_BYTES, 12 * max_chars + (1 << 20))


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


def _check_utf8(path: Path, head: bytes) -> None:
    """Raise when the file's first bytes show another encoding than UTF-8. UTF-16 text read
    as UTF-8 decodes to letters and NULs: its rows would be all rejects, or its header would
    match no field, and the advice to remap fields would mislead."""
    found = _foreign_encoding(head)
    if found is not None:
        raise CorpusError(f"corpus {path} is not UTF-8 text ({found}): save it as UTF-8")


def _foreign_encoding(head: bytes) -> str | None:
    """What shows that text starting with these bytes is UTF-16 or UTF-32; None if nothing."""
    for bom, encoding in _FOREIGN_BOMS.items():
        if head.startswith(bom):
            return f"it starts with a {encoding} byte-order mark"
    # In UTF-16 every other byte of ASCII text is NUL; UTF-8 text holds none.
    if not head or head.count(0) * 4 < len(head):
        return None
    return "it is full of NUL bytes, as UTF-16 text is"


def _lines(handle: io.BufferedReader, limit: int) -> Iterator[bytes | None]:
    """The file's lines, each None where it is longer than `limit` bytes: the rest of such a
    line is skipped a chunk at a time, never held whole."""
    while line := handle.readline(limit + 1):
        if len(line) <= limit or line.endswith(b"\n"):
            yield line
            continue
        while (rest := handle.readline(1 << 20)) and not rest.endswith(b"\n"):
            pass
        yield None


def _jsonl_rows(path: Path, limit: int) -> Iterator[_RawRow]:
    with path.open("rb") as handle:
        head = handle.read(_SNIFF_BYTES)
        _check_utf8(path, head)
        if head.lstrip(codecs.BOM_UTF8 + b" \t\r\n").startswith(b"["):
            raise CorpusError(
                f"corpus {path} holds a JSON array, not JSON Lines: write one JSON object per "
                "line (`jq -c '.[]' FILE`, say)"
            )
        handle.seek(0)
        for number, raw in enumerate(_lines(handle, limit), start=1):
            location = f"line {number}"
            if raw is None:
                detail = f"a line of more than {limit} bytes (not read)"
                yield location, CorpusReject(location, None, "too_long", detail)
                continue
            if not raw.strip():
                continue
            # An editor may start a UTF-8 file with a byte-order mark; CSV accepts it too.
            encoding = "utf-8-sig" if number == 1 else "utf-8"
            try:
                value = json.loads(raw.decode(encoding))
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
    with path.open("rb") as raw:
        _check_utf8(path, raw.read(_SNIFF_BYTES))
    # Read a row at a time: a corpus may be larger than memory allows to hold a few times
    # over. surrogateescape keeps undecodable bytes as lone surrogates, so one bad row is
    # found and rejected instead of failing the whole file.
    with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as text:
        # A short row's missing cells read as empty; a long row's extra cells land under None.
        reader = csv.DictReader(text, restval="")
        # The csv module stops at fields over 131,072 characters; a long story must reach
        # the too_long check like a JSONL one. No field is longer than the whole file.
        with _csv_field_limit(path.stat().st_size):
            try:
                _check_columns(path, reader.fieldnames or [], fields, "its header has no field")
                for number, row in enumerate(reader, start=2):
                    location = f"line {number}"
                    if None in row:
                        detail = f"more cells than the header's {len(reader.fieldnames or [])}"
                        yield location, CorpusReject(location, None, "malformed_row", detail)
                        continue
                    if any(_has_surrogates(str(value)) for value in row.values()):
                        reject = CorpusReject(location, None, "undecodable", "invalid UTF-8 bytes")
                        yield location, reject
                        continue
                    yield location, dict(row)
            except csv.Error as error:
                raise CorpusError(f"corpus {path}: line {reader.line_num}: {error}") from error


@contextmanager
def _csv_field_limit(size: int) -> Iterator[None]:
    """Raise the csv module's field size limit, a process-wide setting, while a reader runs,
    then put it back. Another thread's reader meanwhile only accepts larger fields."""
    previous = csv.field_size_limit()
    csv.field_size_limit(max(previous, min(size, 2**31 - 1)))  # a C long on every platform
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def _parquet_rows(path: Path, fields: FieldMap) -> Iterator[_RawRow]:
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as error:
        reason = first_line(error)
        raise CorpusError(f"corpus {path} is not a readable Parquet file ({reason})") from error
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


def _txt_rows(folder: Path, fields: FieldMap, limit: int) -> Iterator[_RawRow]:
    """One story per top-level .txt file (any case), in name order. Every other entry, a
    subfolder among them, is a `not_txt` reject, and a hidden one (`.DS_Store`) a `hidden`
    reject: left out, but not silently."""
    entries = sorted(folder.iterdir())
    if not any(_is_txt(entry) for entry in entries):
        raise CorpusError(f"{folder} holds no .txt files")
    for entry in entries:
        name, stem = _printable(entry.name), _printable(entry.stem)
        if name.startswith("."):
            # A system's file (macOS's .DS_Store, its ._story.txt resource forks), not a story.
            yield name, CorpusReject(name, None, "hidden", "a hidden entry (not read)")
            continue
        if not _is_txt(entry):
            what = "a subfolder (its files are not read)" if entry.is_dir() else "not a .txt file"
            yield name, CorpusReject(name, None, "not_txt", what)
            continue
        size = entry.stat().st_size
        if size > limit:
            detail = f"a file of {size} bytes, more than {limit} (not read)"
            yield name, CorpusReject(name, stem, "too_long", detail)
            continue
        data = entry.read_bytes()
        foreign = _foreign_encoding(data[:_SNIFF_BYTES])
        if foreign is not None:
            detail = f"not UTF-8 text ({foreign}): save it as UTF-8"
            yield name, CorpusReject(name, stem, "undecodable", detail)
            continue
        try:
            text = data.decode("utf-8-sig")  # an editor's byte-order mark is no text
        except UnicodeDecodeError as error:
            yield name, CorpusReject(name, stem, "undecodable", str(error))
            continue
        yield name, {fields.id: stem, fields.title: stem, fields.text: text}


def _is_txt(entry: Path) -> bool:
    return entry.suffix.lower() == ".txt" and entry.is_file() and not entry.name.startswith(".")


def _printable(name: str) -> str:
    """A file name as text: bytes that are not UTF-8 (kept by the OS as lone surrogates,
    which hashing and Parquet refuse) written as \\xNN, the same for the same name."""
    return os.fsencode(name).decode("utf-8", errors="backslashreplace")


def _has_surrogates(value: str) -> bool:
    return any("\udc80" <= char <= "\udcff" for char in value)


def load_corpus(
    path: Path, corpus_format: str, fields: FieldMap, max_chars: int
) -> tuple[list[Story], list[CorpusReject]]:
    if not path.exists():
        raise CorpusError(f"corpus {path} does not exist")
    kind = detect_format(path) if corpus_format == "auto" else corpus_format
    readers = {
        "jsonl": lambda: _jsonl_rows(path, _row_limit(max_chars)),
        "csv": lambda: _csv_rows(path, fields),
        "parquet": lambda: _parquet_rows(path, fields),
        "txt": lambda: _txt_rows(path, fields, _row_limit(max_chars)),
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
