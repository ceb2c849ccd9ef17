"""The integrity chain from the story shards to the Hub: markers record the hash of each
shard's input and output, `assemble` verifies the chain before it writes anything and
records dataset/manifest.json, `status` and `assemble --check` show a break, and `publish`
refuses a dataset edited, missing or stale since assembly, naming the file."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import dataset_contents
from emopillars.cli import main
from emopillars.hashing import file_hash
from emopillars.run.storage import write_table
from emopillars.stages import STAGE_NAMES


def run_args(finished_run: Path, run_dir: Path) -> list[str]:
    """`emopillars run` with the config of the finished run, into `run_dir`."""
    corpus = finished_run.parent / "stories.jsonl"
    return ["run", "--engine", "fake", "--corpus", str(corpus), "--output", str(run_dir),
            "--shard-size", "2", "--max-actors", "2", "--quiet"]  # fmt: skip


def publish_dry_run(run_dir: Path, staging: Path) -> list[str]:
    return ["publish", str(run_dir), "--repo-id", "alice/emo", "--dry-run", str(staging)]


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:200])


# -- what a finished run records -----------------------------------------------------------


def test_markers_chain_from_the_story_shards_to_the_last_stage(run_dir: Path) -> None:
    for shard in range(3):
        expected = file_hash(run_dir / f"stories/shard-{shard:05d}.parquet")
        for stage in STAGE_NAMES:
            marker = json.loads((run_dir / f"manifest/{stage}/shard-{shard:05d}.json").read_text())
            assert marker["input_sha256"] == expected
            for name in ("output", "rejects", "answers"):
                assert marker[f"{name}_sha256"] == file_hash(run_dir / marker[name])
            expected = marker["output_sha256"]


def test_the_dataset_manifest_names_every_file_and_the_markers_it_came_from(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = run_dir / "dataset"
    manifest = json.loads((dataset / "manifest.json").read_text())
    files = {
        p.relative_to(dataset).as_posix(): file_hash(p)
        for p in dataset.rglob("*")
        if p.is_file() and p.name != "manifest.json"
    }
    assert manifest["files"] == files
    assert "context_less/train-00000-of-00001.parquet" in files and "README.md" in files
    assert len(manifest["built_from"]) == 3 * len(STAGE_NAMES)
    marker = json.loads((run_dir / "manifest/labels/shard-00001.json").read_text())
    assert manifest["built_from"]["labels/shard-00001"] == {
        "fingerprint": marker["fingerprint"],
        "output_sha256": marker["output_sha256"],
    }

    assert main(["status", str(run_dir), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["problems"] == []
    assert status["integrity"] == {
        "intact": True,
        "verified": 15,
        "total": 15,
        "dataset": "current",
    }
    assert main(["assemble", str(run_dir), "--check"]) == 0
    assert "integrity: intact (15 of 15 stage shards verified)" in capsys.readouterr().out


# -- publish: the dataset as assembled, from the markers as they are -----------------------


def _drop_last_row(path: Path) -> None:
    table = pq.read_table(path)
    write_table(path, table.slice(0, table.num_rows - 1))


def _append_byte(path: Path) -> None:
    # No longer a Parquet file: the checks that read it must name it, not crash on it.
    with path.open("ab") as handle:
        handle.write(b"x")


EDITS: dict[str, tuple[Callable[[Path], object], str]] = {
    "data file edited": (
        lambda d: _drop_last_row(d / "context_less/train-00000-of-00001.parquet"),
        "dataset/context_less/train-00000-of-00001.parquet was edited after assembly",
    ),
    "data file damaged": (
        lambda d: _append_byte(d / "context_less/train-00000-of-00001.parquet"),
        "dataset/context_less/train-00000-of-00001.parquet was edited after assembly",
    ),
    "card edited": (
        lambda d: (d / "README.md").write_text((d / "README.md").read_text() + "\nMore.\n"),
        "dataset/README.md was edited after assembly",
    ),
    "data file deleted": (
        lambda d: (d / "context_aware/validation-00000-of-00001.parquet").unlink(),
        "dataset/context_aware/validation-00000-of-00001.parquet was deleted after assembly",
    ),
    "figure deleted": (
        lambda d: (d / "figures/intensity.png").unlink(),
        "dataset/figures/intensity.png was deleted after assembly",
    ),
    "file added": (
        lambda d: (d / "notes.txt").write_text("mine\n"),
        "dataset/notes.txt was added after assembly",
    ),
    "manifest deleted": (
        lambda d: (d / "manifest.json").unlink(),
        "dataset/manifest.json is missing",
    ),
}


@pytest.mark.parametrize("case", list(EDITS))
def test_publish_refuses_a_dataset_changed_after_assembly_naming_the_file(
    case: str, run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit, message = EDITS[case]
    edit(run_dir / "dataset")
    staging = tmp_path / "staging"
    assert main(publish_dry_run(run_dir, staging)) == 1
    err = capsys.readouterr().err
    assert message in err and f"emopillars assemble {run_dir}" in err
    assert "Traceback" not in err
    assert not staging.exists()
    # Assembling again makes it publishable.
    assert main(["assemble", str(run_dir)]) == 0
    assert main(publish_dry_run(run_dir, staging)) == 0


def test_publish_refuses_a_dataset_older_than_the_stage_markers(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A stage shard computed again after assembly (here: its marker says another fingerprint),
    # so the dataset no longer shows what the stage shards hold.
    path = run_dir / "manifest/labels/shard-00001.json"
    marker = json.loads(path.read_text())
    path.write_text(json.dumps({**marker, "fingerprint": "0" * 32}))
    assert main(publish_dry_run(run_dir, tmp_path / "staging")) == 1
    err = capsys.readouterr().err
    assert "manifest/labels/shard-00001.json changed after the dataset was assembled" in err
    assert "stale" in err and not (tmp_path / "staging").exists()
    assert main(["assemble", str(run_dir), "--check"]) == 0  # the chain itself holds
    assert "dataset: 1 problem" in capsys.readouterr().out


# -- assemble: the chain is verified before anything is written ----------------------------


def test_a_truncated_stage_shard_is_refused_shown_and_healed_by_the_next_run(
    finished_run: Path, run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    truncate(run_dir / "utterances/shard-00001.parquet")
    before = tree_bytes(run_dir / "dataset")

    assert main(["assemble", str(run_dir)]) == 1
    err = capsys.readouterr().err
    assert "utterances/shard-00001.parquet changed after it was marked done" in err
    assert "emopillars run" in err and "Traceback" not in err
    assert tree_bytes(run_dir / "dataset") == before  # nothing was written
    assert not (run_dir / "dataset.partial").exists()

    assert main(["status", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "integrity: BROKEN, 1 problem" in out
    assert "  utterances/shard-00001.parquet changed after it was marked done" in out
    assert main(["status", str(run_dir), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["integrity"]["intact"] is False
    assert status["problems"] == [
        {
            "path": "utterances/shard-00001.parquet",
            "problem": "changed after it was marked done",
            "stage": "utterances",
            "shard": 1,
        }
    ]
    assert main(["assemble", str(run_dir), "--check"]) == 1
    assert "utterances/shard-00001.parquet" in capsys.readouterr().out
    assert tree_bytes(run_dir / "dataset") == before

    # The next run recomputes that shard alone, from its kept answers.
    assert main(run_args(finished_run, run_dir)) == 0
    out = capsys.readouterr().out
    assert "this run: 1 stage shards computed, 14 already done; 0 requests sent" in out
    assert dataset_contents(run_dir) == dataset_contents(finished_run)
    assert main(["assemble", str(run_dir), "--check"]) == 0


def test_a_marker_whose_counts_were_edited_is_broken_and_healed_by_the_next_run(
    finished_run: Path, run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The counts reach status, quality.json and the card: an edited one is damage, though
    # every file still has its recorded hash.
    path = run_dir / "manifest/labels/shard-00000.json"
    marker = json.loads(path.read_text())
    true_outputs = marker["outputs"]
    marker.update(outputs=999, accepted=999, rejected=0, reject_reasons={})
    path.write_text(json.dumps(marker))

    assert main(["status", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "integrity: BROKEN, 1 problem" in out
    assert (
        f"manifest/labels/shard-00000.json was edited: it counts {marker['inputs']} inputs but "
        f"999 accepted and 0 rejected; counts 999 outputs but labels/shard-00000.parquet holds "
        f"{true_outputs} rows; counts 0 rejects by reason but labels/rejects-00000.parquet"
    ) in out
    assert main(["assemble", str(run_dir)]) == 1
    assert "manifest/labels/shard-00000.json was edited" in capsys.readouterr().err

    # The next run recomputes that shard alone, from its kept answers, and counts right.
    assert main(run_args(finished_run, run_dir)) == 0
    assert "1 stage shards computed, 14 already done; 0 requests sent" in capsys.readouterr().out
    assert json.loads(path.read_text())["outputs"] == true_outputs
    assert dataset_contents(run_dir) == dataset_contents(finished_run)


@pytest.mark.parametrize("damage", ["deleted", "garbled", "a folder"])
def test_assemble_check_refuses_what_assemble_refuses_a_missing_or_unreadable_run_record(
    finished_run: Path, run_dir: Path, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    record = run_dir / "run.json"
    record.unlink()
    if damage == "garbled":
        record.write_text("{not json")
    elif damage == "a folder":
        record.mkdir()
    assert main(["assemble", str(run_dir), "--check"]) == 1
    out = capsys.readouterr().out
    assert "integrity: BROKEN, 1 problem" in out
    assert f"  run.json is {'missing' if damage == 'deleted' else 'unreadable ('}" in out
    assert main(["assemble", str(run_dir)]) != 0  # as --check said
    capsys.readouterr()
    if damage == "a folder":
        record.rmdir()  # what a run cannot undo for its user: the message names the path
    # The next run writes it again, asking the engine nothing.
    assert main(run_args(finished_run, run_dir)) == 0
    assert "0 requests sent" in capsys.readouterr().out
    assert main(["assemble", str(run_dir), "--check"]) == 0


def test_an_edited_story_shard_breaks_the_chain_and_is_rebuilt_from_the_corpus(
    finished_run: Path, run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = run_dir / "stories/shard-00002.parquet"
    table = pq.read_table(path)
    texts = [text + " Then a dragon came." for text in table.column("text").to_pylist()]
    write_table(path, table.set_column(2, "text", pa.array(texts)))

    assert main(["assemble", str(run_dir)]) == 1
    err = capsys.readouterr().err
    assert "stories/shard-00002.parquet is not the input actors shard 2 was computed from" in err
    assert main(["status", str(run_dir)]) == 0
    assert "stories/shard-00002.parquet is not the input" in capsys.readouterr().out

    assert main(run_args(finished_run, run_dir)) == 0
    assert "0 stage shards computed, 15 already done" in capsys.readouterr().out
    assert path.read_bytes() == (finished_run / "stories/shard-00002.parquet").read_bytes()
    assert dataset_contents(run_dir) == dataset_contents(finished_run)


def test_a_plan_that_disagrees_with_the_story_shards_is_detected(
    finished_run: Path, run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = json.loads((run_dir / "plan.json").read_text())
    ids = plan["story_ids"]
    plan["story_ids"] = [ids[1], ids[0], *ids[2:]]
    (run_dir / "plan.json").write_text(json.dumps(plan))
    before = tree_bytes(run_dir / "dataset")

    assert main(["assemble", str(run_dir), "--check"]) == 1
    out = capsys.readouterr().out
    assert "plan.json disagrees with the story shards" in out
    assert f"the first difference is story 0: {ids[1]!r} there, {ids[0]!r} in a shard" in out
    assert main(["assemble", str(run_dir)]) == 1
    assert "plan.json disagrees with the story shards" in capsys.readouterr().err
    assert tree_bytes(run_dir / "dataset") == before

    plan["story_ids"], plan["shards"] = ids, 2  # one shard fewer than there are stories for
    (run_dir / "plan.json").write_text(json.dumps(plan))
    assert main(["assemble", str(run_dir), "--check"]) == 1
    assert "it names 6 stories in 2 shards, the shards hold 4" in capsys.readouterr().out

    assert main(run_args(finished_run, run_dir)) == 0  # the run plans its folder again
    assert main(["assemble", str(run_dir), "--check"]) == 0


def test_assemble_check_names_the_shards_not_done(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (run_dir / "manifest/labels/shard-00001.json").unlink()
    before = tree_bytes(run_dir)
    assert main(["assemble", str(run_dir), "--check"]) == 1
    out = capsys.readouterr().out
    assert "integrity: intact (14 of 15 stage shards verified)" in out
    assert "not ready to assemble: 1 of 15 stage shards are not done:" in out
    assert "  labels/shard-00001" in out
    assert tree_bytes(run_dir) == before
