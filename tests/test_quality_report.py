"""The quality report: every number checked against a hand-computed value on a small dataset
written by hand, then the report of a fake-engine run end to end: `emopillars report`, the
figures and the card, determinism, and the publish checks that need a current quality.json."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import dataset_contents, fake_config, write_corpus
from emopillars.api import run_pipeline
from emopillars.cli import main
from emopillars.dataset.assemble import CONTEXT_AWARE, CONTEXT_LESS
from emopillars.dataset.embeddings import DEFAULT_MODEL
from emopillars.dataset.report import measure_dataset, quality_of_run
from emopillars.dataset.similarity import LEXICAL_METHOD, EmbeddingVectorizer, LexicalVectorizer
from emopillars.release.hub import HubClient, RetryPolicy
from emopillars.run.layout import RunLayout
from emopillars.run.manifest import Manifest, ShardMarker
from emopillars.run.storage import write_table
from emopillars.stages import STAGE_NAMES
from emopillars.stages.taxonomy import LABEL_IDS, LABELS
from fake_hub import FakeHubApi

METHODS = {LEXICAL_METHOD, f"embeddings: cosine of {DEFAULT_MODEL}"}
FIGURES = ["label_distribution", "intended_vs_labels", "intensity", "label_cooccurrence",
           "rejects"]  # fmt: skip

# -- a dataset written by hand -------------------------------------------------------------

# (id, story, actor, utterance, intended, labels, scores); story s3 has no rows.
LESS = [
    ("u1", "s1", "A", "I am so happy today", "joy", ["joy", "excitement"], [0.9, 0.45]),
    ("u2", "s1", "A", "I am so happy today!", "joy", ["joy"], [0.8]),
    ("u3", "s1", "A", "the rain will not stop", "sadness", ["sadness", "neutral"], [0.6, 0.35]),
    ("u4", "s1", "B", "you lied to me again", "anger",
     ["anger", "disappointment", "disapproval"], [1.0, 0.7, 0.5]),
    ("u5", "s1", "B", "you lied to me again and again", "anger", ["annoyance"], [0.3]),
    ("u6", "s2", "C", "where is the train", "neutral", ["neutral", "curiosity"], [0.5, 0.95]),
]  # fmt: skip
# (id of a LESS row, context, rewritten utterance)
AWARE = [
    ("u1", "She opened the letter from her brother and smiled at the happy news",
     "I finally got it today"),
    ("u4", "They had promised to come home before dark", "you said the same thing last week"),
    ("u6", "The station was empty and cold at midnight", "where is it now then"),
]  # fmt: skip
SPLIT_OF_STORY = {"s1": "train", "s2": "test"}
REJECTS = {"actors": {"duplicate_actor": 2}, "labels": {"below_threshold": 3, "schema": 1}}


def _write_split(folder: Path, split: str, rows: list[dict[str, Any]], schema: pa.Schema) -> None:
    columns = {name: [row[name] for row in rows] for name in schema.names}
    write_table(folder / f"{split}-00000-of-00001.parquet", pa.table(columns, schema=schema))


def _write_config(dataset: Path, name: str, rows: list[dict[str, Any]], schema: pa.Schema) -> None:
    for split in ("train", "test"):
        chosen = [row for row in rows if SPLIT_OF_STORY[row["story_id"]] == split]
        _write_split(dataset / name, split, chosen, schema)


@pytest.fixture
def hand_run(tmp_path: Path) -> Path:
    """A run folder with a plan, a record, one marker per stage and a dataset, all by hand."""
    run = tmp_path / "hand"
    prompts = tmp_path / "prompts" / "v1"
    prompts.mkdir(parents=True)
    (prompts / "emotion_words.json").write_text(json.dumps({"joy": ["happy", "glad"]}))
    plan = {"shards": 1, "stories": 3, "story_ids": ["s1", "s2", "s3"], "corpus": "x",
            "corpus_rejects": {}, "num_workers": 1, "run_fingerprint": "f"}  # fmt: skip
    record = {
        "config": {"seed": 0, "prompt_version": "v1", "prompts_dir": str(tmp_path / "prompts")},
        "engine": {"name": "fake", "model": "fake", "options": {}, "revision": None},
        "prompt_version": "v1",
        "prompt_files_sha256": {},
    }
    run.mkdir()
    (run / "plan.json").write_text(json.dumps(plan))
    (run / "run.json").write_text(json.dumps(record))
    manifest = Manifest(RunLayout(run))
    for number, stage in enumerate(STAGE_NAMES):
        reasons = REJECTS.get(stage, {})
        manifest.write(ShardMarker(
            stage=stage, shard=0, fingerprint="f", output="o", output_sha256="h", rejects="r",
            inputs=10 + number, accepted=10 + number - sum(reasons.values()),
            rejected=sum(reasons.values()), outputs=20 + number, reject_reasons=reasons,
        ))  # fmt: skip
    less = [
        {"id": i, "story_id": s, "actor_id": a, "actor": a, "actor_description": "", "utterance": u,
         "intended_emotion": e, "labels": [LABEL_IDS[x] for x in ls], "scores": sc}
        for i, s, a, u, e, ls, sc in LESS
    ]  # fmt: skip
    by_id = {row["id"]: row for row in less}
    aware = [
        {**by_id[i], "context": context, "utterance": rewrite,
         "original_utterance": by_id[i]["utterance"]}
        for i, context, rewrite in AWARE
    ]  # fmt: skip
    _write_config(run / "dataset", "context_less", less, CONTEXT_LESS.schema)
    _write_config(run / "dataset", "context_aware", aware, CONTEXT_AWARE.schema)
    return run


def reference_tfidf(texts: Sequence[str]) -> list[dict[str, float]]:
    """TF-IDF as the report documents it, written out with dicts: tf the count, idf
    ln((1 + N) / (1 + df)) + 1, each vector of length 1."""
    tokens = [[w.lower() for w in text.replace("!", "").split()] for text in texts]
    df = Counter(word for words in tokens for word in set(words))
    vectors = []
    for words in tokens:
        raw = {
            w: n * (math.log((1 + len(texts)) / (1 + df[w])) + 1) for w, n in Counter(words).items()
        }
        norm = math.sqrt(sum(v * v for v in raw.values()))
        vectors.append({w: v / norm for w, v in raw.items()})
    return vectors


def cosine(first: dict[str, float], second: dict[str, float]) -> float:
    return sum(v * second.get(w, 0.0) for w, v in first.items())


def test_every_number_matches_a_hand_computation(hand_run: Path) -> None:
    report = measure_dataset(hand_run, hand_run / "dataset", LexicalVectorizer())
    less = report.configs.context_less
    aware = report.configs.context_aware
    assert less is not None and aware is not None
    assert report.source == "dataset" and report.complete and report.missing == []

    # Labels: 11 labels over 6 rows; neutral in u3 and u6; intended missed only by u5.
    assert less.rows == 6 and less.stories == 3 and less.rows_per_story == 2.0
    assert less.labels_per_example == round(11 / 6, 4)
    assert less.neutral_share == round(2 / 6, 4)
    assert less.intended_in_labels == round(5 / 6, 4)
    assert len(less.label_distribution) == 28 and set(less.label_distribution) == set(LABELS)
    sixth = round(1 / 6, 4)
    assert {k: v for k, v in less.label_distribution.items() if v} == {
        "joy": round(2 / 6, 4), "neutral": round(2 / 6, 4), "excitement": sixth,
        "sadness": sixth, "anger": sixth, "disappointment": sixth, "disapproval": sixth,
        "annoyance": sixth, "curiosity": sixth,
    }  # fmt: skip
    assert {k: v for k, v in less.intended_distribution.items() if v} == {
        "joy": round(2 / 6, 4),
        "anger": round(2 / 6, 4),
        "sadness": sixth,
        "neutral": sixth,
    }
    assert less.intended_vs_labels == {
        "joy": {"joy": 2, "excitement": 1},
        "sadness": {"sadness": 1, "neutral": 1},
        "anger": {"anger": 1, "disappointment": 1, "disapproval": 1, "annoyance": 1},
        "neutral": {"neutral": 1, "curiosity": 1},
    }
    assert less.label_cooccurrence == {
        "joy": {"excitement": 1}, "excitement": {"joy": 1},
        "sadness": {"neutral": 1}, "neutral": {"sadness": 1, "curiosity": 1},
        "curiosity": {"neutral": 1},
        "anger": {"disappointment": 1, "disapproval": 1},
        "disappointment": {"anger": 1, "disapproval": 1},
        "disapproval": {"anger": 1, "disappointment": 1},
    }  # fmt: skip
    # 0.9 0.45 0.8 0.6 0.35 1.0 0.7 0.5 0.3 0.5 0.95; 0.3 goes to 0.3-0.4, 1.0 to 0.9-1.0.
    assert less.intensity_histogram == {
        "0.0-0.1": 0, "0.1-0.2": 0, "0.2-0.3": 0, "0.3-0.4": 2, "0.4-0.5": 1,
        "0.5-0.6": 2, "0.6-0.7": 1, "0.7-0.8": 1, "0.8-0.9": 1, "0.9-1.0": 3,
    }  # fmt: skip
    # Per split: u1-u5 (story s1) are train, u6 (s2) is test, validation is empty.
    assert less.splits["train"].rows == 5 and less.splits["train"].labels_per_example == 1.8
    assert less.splits["train"].neutral_share == 0.2
    assert less.splits["train"].intended_in_labels == 0.8
    assert less.splits["test"].model_dump() == {
        "rows": 1,
        "labels_per_example": 2.0,
        "neutral_share": 1.0,
        "intended_in_labels": 1.0,
    }
    assert less.splits["validation"].rows == 0 and less.splits["validation"].neutral_share is None

    # Diversity: 19 distinct of 31 words, 17 distinct of 25 word pairs; u2 repeats u1 (the
    # "!" is no word); u4 and u5 share 5 of 6 distinct words (Jaccard 0.83).
    assert less.distinct_1 == round(19 / 31, 4) and less.distinct_2 == round(17 / 25, 4)
    assert less.exact_duplicates == 1 and less.near_duplicates == 2
    # Within actors: pairs u1-u2 (cosine 1), u1-u3, u2-u3 (no shared word: 0) and u4-u5.
    # Across actors: 11 pairs, of which only u3-u6 share a word ("the").
    vectors = reference_tfidf([row[3] for row in LESS])
    assert cosine(vectors[0], vectors[1]) == pytest.approx(1.0)
    within = (1.0 + cosine(vectors[3], vectors[4])) / 4
    cross = cosine(vectors[2], vectors[5]) / 11
    a, b = math.log(7 / 3) + 1, math.log(7 / 2) + 1  # idf of a word in 2 texts, in 1
    assert cosine(vectors[3], vectors[4]) == pytest.approx(
        6 * a * a / (a * math.sqrt(5) * math.sqrt(8 * a * a + b * b))
    )
    assert cosine(vectors[2], vectors[5]) == pytest.approx(
        a * a / math.sqrt((a * a + 4 * b * b) * (a * a + 3 * b * b))
    )
    assert less.within_actor_similarity == round(within, 4)
    assert less.cross_actor_similarity == round(cross, 4)
    assert less.similarity_method == LEXICAL_METHOD == "lexical: tf-idf cosine of words"

    # Contexts: 13, 8 and 8 words; only the first has an emotion word ("happy").
    assert aware.rows == 3 and aware.rows_per_story == 1.0
    assert aware.context_words is not None
    assert aware.context_words.model_dump() == {
        "min": 8,
        "p10": 8.0,
        "median": 8.0,
        "mean": 9.67,
        "p90": 12.0,
        "max": 13,
    }
    assert aware.context_emotion_word_share == round(1 / 3, 4)
    # Rewrites: "happy" leaves u1; lengths 5/5, 7/5, 5/4.
    assert aware.original_emotion_word_share == round(1 / 3, 4)
    assert aware.rewrite_emotion_word_share == 0.0
    assert aware.rewrite_length_ratio_median == 1.25
    originals = [row[3] for row in LESS if row[0] in {"u1", "u4", "u6"}]
    rewrites = [row[2] for row in AWARE]
    pairs = reference_tfidf([*originals, *rewrites])
    expected = sum(cosine(pairs[k], pairs[k + 3]) for k in range(3)) / 3
    assert aware.rewrite_similarity == round(expected, 4)
    # One utterance per actor: no pair within an actor; the rewrites are the utterances.
    assert aware.within_actor_similarity is None
    rewritten = reference_tfidf(rewrites)
    across = (cosine(rewritten[0], rewritten[1]) + cosine(rewritten[0], rewritten[2])
              + cosine(rewritten[1], rewritten[2])) / 3  # fmt: skip
    assert aware.cross_actor_similarity == round(across, 4)
    assert aware.labels_per_example == round(7 / 3, 4) and aware.intended_in_labels == 1.0

    # Yield, from the markers; the files, by their sha256.
    assert report.stages["labels"].model_dump() == {
        "inputs": 12, "accepted": 8, "rejected": 4, "item_rejects": 0, "outputs": 22,
        "reject_reasons": {"below_threshold": 3, "schema": 1},
    }  # fmt: skip
    dataset = hand_run / "dataset"
    assert report.files == {
        path.relative_to(dataset).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in dataset.rglob("*.parquet")
    }


class TableEmbedder:
    """Sentence embeddings from a table: the report's other similarity method."""

    name = "test/table-embedder"

    def __init__(self, vectors: dict[str, list[float]]) -> None:
        self.vectors = vectors

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        rows = np.asarray([self.vectors[text] for text in texts], dtype=np.float32)
        return np.asarray(rows / np.linalg.norm(rows, axis=1, keepdims=True))


def test_similarity_with_a_sentence_embedder(hand_run: Path) -> None:
    unit = {0: [1.0, 0.0], 60: [0.5, math.sqrt(3) / 2], 90: [0.0, 1.0]}  # by angle
    angle = {"u1": 0, "u2": 0, "u3": 90, "u4": 60, "u5": 0, "u6": 60}
    texts = {row[3]: unit[angle[row[0]]] for row in LESS}
    texts.update({row[2]: unit[angle[row[0]]] for row in AWARE})
    vectorize = EmbeddingVectorizer(TableEmbedder(texts))
    report = measure_dataset(hand_run, hand_run / "dataset", vectorize)
    less = report.configs.context_less
    assert less is not None
    assert less.similarity_method == "embeddings: cosine of test/table-embedder"
    # Within: u1-u2 1, u1-u3 0, u2-u3 0, u4-u5 0.5.
    assert less.within_actor_similarity == round(1.5 / 4, 4)
    # Across: u1,u2 (0 deg) and u3 (90) against u4 (60), u5 (0), u6 (60); u4, u5 against u6.
    cos = {0: 1.0, 30: math.sqrt(3) / 2, 60: 0.5, 90: 0.0}
    pairs = [(0, 60), (0, 0), (0, 60)] * 2 + [(90, 60), (90, 0), (90, 60), (60, 60), (0, 60)]
    assert less.cross_actor_similarity == round(sum(cos[abs(x - y)] for x, y in pairs) / 11, 4)
    aware = report.configs.context_aware
    assert aware is not None and aware.rewrite_similarity == 1.0  # same angle as the original


# -- a fake-engine run ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("quality")
    run_pipeline(fake_config(write_corpus(folder / "stories.jsonl"), folder / "run"))
    return folder / "run"


@pytest.fixture
def run_dir(finished_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(finished_run, tmp_path / "run"))


def report_json(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    assert main(["report", str(run_dir), "--json"]) == 0
    printed: dict[str, Any] = json.loads(capsys.readouterr().out)
    return printed


def test_report_json_has_the_acceptance_keys_and_agrees_with_the_files(
    finished_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = report_json(finished_run, capsys)
    assert report == json.loads((finished_run / "dataset/quality.json").read_text())
    assert set(report["configs"]) == {"context_less", "context_aware"}
    for name, config in report["configs"].items():
        for key in ("rows", "labels_per_example", "neutral_share", "intended_in_labels",
                    "label_distribution", "within_actor_similarity", "cross_actor_similarity",
                    "similarity_method"):  # fmt: skip
            assert key in config, (name, key)
        assert len(config["label_distribution"]) == 28
        # Embeddings where the `quality` extra is installed, else the lexical stand-in.
        assert config["similarity_method"] in METHODS
        rows = pa.concat_tables(
            [pq.read_table(p) for p in sorted((finished_run / "dataset" / name).glob("*.parquet"))]
        ).to_pylist()
        labels = [row["labels"] for row in rows]
        assert config["rows"] == len(rows) > 0
        assert config["labels_per_example"] == round(sum(map(len, labels)) / len(rows), 4)
        neutral = LABELS.index("neutral")
        assert config["neutral_share"] == round(sum(neutral in ls for ls in labels) / len(rows), 4)
        hits = sum(LABEL_IDS[row["intended_emotion"]] in row["labels"] for row in rows)
        assert config["intended_in_labels"] == round(hits / len(rows), 4)
        for label, value in config["label_distribution"].items():
            assert value == round(sum(LABEL_IDS[label] in ls for ls in labels) / len(rows), 4)
    aware = report["configs"]["context_aware"]
    assert "context_emotion_word_share" in aware
    rows = pa.concat_tables(
        [pq.read_table(p) for p in sorted((finished_run / "dataset/context_aware").glob("*"))]
    ).to_pylist()
    ratios = sorted(
        len(row["utterance"].split()) / len(row["original_utterance"].split()) for row in rows
    )
    assert aware["rewrite_length_ratio_median"] == round(float(np.median(ratios)), 4)
    assert report["complete"] is True and report["missing"] == []


def test_report_table_names_the_numbers_and_the_paper(
    finished_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(finished_run)]) == 0
    out = capsys.readouterr().out
    assert "measured on the assembled dataset" in out
    for text in ("labels per example", "3.17", "similarity within an actor", "0.30", "0.16",
                 "contexts with an emotion word", "similarity: ",
                 "figures: dataset/figures/label_distribution.png"):  # fmt: skip
        assert text in out


def test_figures_exist_the_card_links_them_and_the_folder_still_loads(finished_run: Path) -> None:
    from datasets import load_dataset

    dataset = finished_run / "dataset"
    card = (dataset / "README.md").read_text()
    assert "## Quality" in card
    for name in FIGURES:
        png = dataset / "figures" / f"{name}.png"
        assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        assert f"](figures/{name}.png)" in card
    assert json.loads((dataset / "quality.json").read_text())["figures"] == [
        f"figures/{name}.png" for name in FIGURES
    ]
    for config in ("context_less", "context_aware"):
        assert load_dataset(str(dataset), config)["train"].num_rows > 0


def test_two_identical_runs_write_identical_reports_and_figures(
    finished_run: Path, corpus: Path, tmp_path: Path
) -> None:
    config = fake_config(corpus, tmp_path / "again")
    run_pipeline(config)
    first, second = dataset_contents(finished_run), dataset_contents(config.output_dir)
    assert "quality.json" in first and "figures/rejects.png" in first
    assert first == second


def test_run_ends_with_a_quality_summary(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = ["--engine", "fake", "--corpus", str(corpus), "--output", str(tmp_path / "run"),
             "--max-actors", "2", "--shard-size", "2", "--quiet"]  # fmt: skip
    assert main(["run", *flags]) == 0
    out = capsys.readouterr().out
    assert "quality of the dataset:" in out and "paper" in out
    for line in ("labels per example", "examples with neutral", "similarity across actors"):
        assert line in out
    assert f"emopillars report {tmp_path / 'run'}" in out


def test_an_unfinished_run_is_reported_from_its_finished_shards(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.rmtree(run_dir / "dataset")
    (run_dir / "manifest/rewrites/shard-00001.json").unlink()
    report = report_json(run_dir, capsys)
    assert report["source"] == "stage shards" and report["complete"] is False
    assert "rewrites: 1 of 3 shards not done (1)" in report["missing"]
    assert report["figures"] == [] and report["files"] == {}
    less, aware = report["configs"]["context_less"], report["configs"]["context_aware"]
    done = sum(pq.read_metadata(run_dir / f"rewrites/shard-0000{s}.parquet").num_rows
               for s in (0, 2))  # fmt: skip
    assert aware["rows"] == done < less["rows"]
    assert main(["report", str(run_dir)]) == 0
    assert "not measured yet:" in capsys.readouterr().out


def test_report_leaves_out_a_shard_changed_since_its_marker_and_says_so(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.rmtree(run_dir / "dataset")
    (run_dir / "manifest/rewrites/shard-00002.json").unlink()  # not done: the run goes on
    intact = report_json(run_dir, capsys)["configs"]
    # A shard copied over another: every row a duplicate, unless its marker is checked.
    shutil.copyfile(run_dir / "labels/shard-00000.parquet", run_dir / "labels/shard-00001.parquet")
    report = report_json(run_dir, capsys)
    assert (
        "labels/shard-00001.parquet changed after it was marked done: not measured"
        in report["missing"]
    )
    assert any(line.startswith("to rebuild them: run the same") for line in report["missing"])
    less, aware = report["configs"]["context_less"], report["configs"]["context_aware"]
    labels_1 = json.loads((run_dir / "manifest/labels/shard-00001.json").read_text())["outputs"]
    assert less["rows"] == intact["context_less"]["rows"] - labels_1
    assert less["exact_duplicates"] == 0
    rewrites_1 = json.loads((run_dir / "manifest/rewrites/shard-00001.json").read_text())
    assert aware["rows"] == intact["context_aware"]["rows"] - rewrites_1["outputs"]


def test_report_of_a_dataset_changed_after_assembly_names_it_and_measures_the_shards(
    run_dir: Path, finished_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assembled = report_json(finished_run, capsys)
    (run_dir / "dataset/context_less/test-00000-of-00001.parquet").unlink()
    report = report_json(run_dir, capsys)
    assert report["source"] == "stage shards" and report["complete"] is False
    assert report["missing"][:2] == [
        "dataset/context_less/test-00000-of-00001.parquet was deleted after assembly: the "
        "dataset is not measured",
        f"`emopillars assemble {run_dir}` builds the dataset again",
    ]
    # What assembly would make again, not what is left of the dataset.
    assert report["configs"] == assembled["configs"]
    assert main(["report", str(run_dir)]) == 0
    assert "measured on the finished stage shards, not an assembled dataset" in (
        capsys.readouterr().out
    )


def test_a_stale_quality_json_is_measured_again_by_report(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (run_dir / "dataset/quality.json").unlink()
    report = quality_of_run(run_dir)
    assert report.source == "dataset" and not report.complete
    assert any("emopillars assemble" in part for part in report.missing)


def test_report_of_a_folder_that_is_no_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(tmp_path)]) == 2
    assert "is not an emopillars run folder" in capsys.readouterr().err


# -- publishing ----------------------------------------------------------------------------


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HubClient:
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    api = FakeHubApi(tmp_path / "hub", "hf_test")
    return HubClient(api=api, retry=RetryPolicy(attempts=1, first_wait_s=0, max_wait_s=0))


def _publish(run_dir: Path, hub: HubClient) -> int:
    return main(["publish", str(run_dir), "--repo-id", "alice/emo"], hub=hub)


def test_publish_refuses_a_missing_quality_json(
    run_dir: Path, hub: HubClient, capsys: pytest.CaptureFixture[str]
) -> None:
    (run_dir / "dataset/quality.json").unlink()
    assert _publish(run_dir, hub) == 1
    err = capsys.readouterr().err
    assert "quality.json is missing" in err and f"emopillars assemble {run_dir}" in err


def test_publish_refuses_a_stale_quality_json_until_assembled_again(
    run_dir: Path, hub: HubClient, capsys: pytest.CaptureFixture[str]
) -> None:
    train = run_dir / "dataset/context_less/train-00000-of-00001.parquet"
    table = pq.read_table(train)
    write_table(train, table.slice(0, table.num_rows - 1))  # still a valid data file
    assert _publish(run_dir, hub) == 1
    err = capsys.readouterr().err
    assert "quality.json is stale: context_less/train-00000-of-00001.parquet changed" in err
    assert main(["assemble", str(run_dir)]) == 0
    assert _publish(run_dir, hub) == 0


def test_published_tree_carries_the_report_figures_and_gates(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    staging = tmp_path / "staging"
    assert main(["publish", str(run_dir), "--repo-id", "alice/emo", "--dry-run", str(staging)]) == 0
    assert (staging / "quality.json").read_bytes() == (
        run_dir / "dataset/quality.json"
    ).read_bytes()
    for name in FIGURES:
        assert (staging / f"figures/{name}.png").is_file()
    provenance = json.loads((staging / "provenance.json").read_text())
    run = json.loads((run_dir / "run.json").read_text())
    assert provenance["gates"] == run["config"]["gates"]
