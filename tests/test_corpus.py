"""Corpus loaders: every format, the field mapping, and bad rows recorded as rejects."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from emopillars.resources import sample_corpus
from emopillars.run.corpus import CorpusError, FieldMap, load_corpus

FIELDS = FieldMap()


def reasons(rejects: list) -> list[str]:  # type: ignore[type-arg]
    return [reject.reason for reject in rejects]


def test_sample_corpus_is_large_varied_and_clean() -> None:
    stories, rejects = load_corpus(sample_corpus(), "auto", FIELDS, 6000)
    assert len(stories) >= 40 and rejects == []
    genres = {json.loads(line)["genre"] for line in sample_corpus().read_text().splitlines()}
    assert len(genres) >= 10


def test_jsonl_bad_rows_are_rejected_and_loading_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    lines = [
        json.dumps({"id": "a", "title": "A", "text": "Alpha story."}).encode(),
        b'{"id": "b", "text": "caf\xe9 without utf-8"}',
        b"{not json",
        json.dumps({"id": "c", "text": "   "}).encode(),
        json.dumps({"id": "a", "text": "Same id again."}).encode(),
        json.dumps({"id": "d", "text": "x" * 200}).encode(),
        json.dumps({"id": "e"}).encode(),
        json.dumps(["a list"]).encode(),
        json.dumps({"id": "f", "text": "Fine story."}).encode(),
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    stories, rejects = load_corpus(path, "auto", FIELDS, max_chars=100)
    assert [s.story_id for s in stories] == ["a", "f"]
    assert stories[1].title == "f"  # no title: the id stands in
    assert reasons(rejects) == ["undecodable", "malformed_row", "empty_text", "duplicate_id",
                                "too_long", "missing_field", "malformed_row"]  # fmt: skip
    assert rejects[0].location == "line 2"
    assert "--text-field" in rejects[5].detail


def test_csv_with_field_mapping_and_a_bad_row(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_bytes(
        b'plot_id,name,synopsis\n1,One,"A story, with a comma"\n2,Two,bad \xff byte\n3,Three,Fine\n'
    )
    stories, rejects = load_corpus(
        path, "auto", FieldMap(id="plot_id", title="name", text="synopsis"), 6000
    )
    assert [(s.story_id, s.title, s.text) for s in stories] == [
        ("1", "One", "A story, with a comma"), ("3", "Three", "Fine")
    ]  # fmt: skip
    assert reasons(rejects) == ["undecodable"] and rejects[0].location == "line 3"


def test_parquet_and_txt_folder(tmp_path: Path) -> None:
    table = pa.table({"id": ["p1", "p2"], "title": ["P1", None], "text": ["One.", ""]})
    pq.write_table(table, tmp_path / "c.parquet")
    stories, rejects = load_corpus(tmp_path / "c.parquet", "auto", FIELDS, 6000)
    assert [s.story_id for s in stories] == ["p1"] and reasons(rejects) == ["empty_text"]

    folder = tmp_path / "txt"
    folder.mkdir()
    (folder / "alpha.txt").write_text("First story.\nSecond line.", encoding="utf-8")
    (folder / "beta.txt").write_bytes(b"\xff\xfe broken")
    stories, rejects = load_corpus(folder, "auto", FIELDS, 6000)
    assert [(s.story_id, s.text) for s in stories] == [("alpha", "First story. Second line.")]
    assert reasons(rejects) == ["undecodable"] and rejects[0].location == "beta.txt"


def test_unreadable_corpora_fail_with_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="cannot tell the format"):
        (tmp_path / "stories.xml").write_text("<x/>")
        load_corpus(tmp_path / "stories.xml", "auto", FIELDS, 6000)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match=r"no \.txt files"):
        load_corpus(tmp_path / "empty", "auto", FIELDS, 6000)
    with pytest.raises(CorpusError, match="does not exist"):
        load_corpus(tmp_path / "missing.jsonl", "auto", FIELDS, 6000)
