"""State that heals: a torn marker, a damaged story shard, a corrupt plan.json or run.json
is rebuilt by the next run, from kept answers and the corpus; what cannot be rebuilt safely
is one line naming the file. Reading commands write nothing, so a finished run folder on a
read-only mount can be inspected and published to a staging folder elsewhere."""

from __future__ import annotations

import json
import logging
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import dataset_contents
from emopillars.cli import main
from emopillars.run.storage import CorruptFileError
from emopillars.stages import STAGE_NAMES


def run_args(finished_run: Path, run_dir: Path, *extra: str) -> list[str]:
    """`emopillars run` with the config of the finished run, into `run_dir`."""
    corpus = finished_run.parent / "stories.jsonl"
    return ["run", "--engine", "fake", "--corpus", str(corpus), "--output", str(run_dir),
            "--shard-size", "2", "--max-actors", "2", "--quiet", *extra]  # fmt: skip


def marker(run_dir: Path, stage: str, shard: int) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(
        (run_dir / f"manifest/{stage}/shard-{shard:05d}.json").read_text()
    )
    return loaded


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file's bytes and modification time, but the folder lock's files: taking the lock
    (run/lock.py) is how a command learns that no run is writing, and holds no run state."""
    return {
        str(path.relative_to(folder)): (path.read_bytes(), path.stat().st_mtime_ns)
        for path in folder.rglob("*")
        if path.is_file() and not _is_lock_file(path.relative_to(folder))
    }


def _is_lock_file(relative: Path) -> bool:
    return relative.parts[0] == "locks" or relative.name.startswith(".lock")


# -- markers -------------------------------------------------------------------------------


def test_a_marker_that_is_not_json_is_recomputed_from_its_kept_answers(
    finished_run: Path,
    run_dir: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = run_dir / "manifest/labels/shard-00001.json"
    path.write_text(path.read_text()[:40])  # torn
    assert main(["status", str(run_dir)]) == 0
    assert "manifest/labels/shard-00001.json is unreadable (not valid JSON" in (
        capsys.readouterr().out
    )

    with caplog.at_level(logging.INFO, logger="emopillars"):
        assert main(run_args(finished_run, run_dir)) == 0
    assert "labels shard 1: recomputing it: its marker manifest/labels/shard-00001.json is " in (
        caplog.text
    )
    assert "1 stage shards computed, 14 already done; 0 requests sent" in capsys.readouterr().out
    healed = marker(run_dir, "labels", 1)
    assert healed["requests_sent"] == 0
    assert healed["answers_reparsed"] == marker(finished_run, "labels", 1)["requests_sent"]
    assert dataset_contents(run_dir) == dataset_contents(finished_run)


def test_a_marker_that_fails_validation_is_recomputed(
    finished_run: Path, run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (run_dir / "manifest/contexts/shard-00000.json").write_text('{"stage": "contexts"}\n')
    assert main(run_args(finished_run, run_dir)) == 0
    assert "1 stage shards computed, 14 already done; 0 requests sent" in capsys.readouterr().out
    assert marker(run_dir, "contexts", 0)["answers_reparsed"] > 0
    assert dataset_contents(run_dir) == dataset_contents(finished_run)


def test_markers_from_before_the_chain_get_their_links_without_recomputing(
    finished_run: Path, run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for path in (run_dir / "manifest").glob("*/*.json"):
        old = json.loads(path.read_text())
        for key in ("input_sha256", "rejects_sha256", "answers_sha256"):
            del old[key]
        path.write_text(json.dumps(old))
    assert main(["assemble", str(run_dir), "--check"]) == 1
    assert "records no input hash (written by an older emopillars)" in capsys.readouterr().out

    assert main(run_args(finished_run, run_dir)) == 0
    assert "0 stage shards computed, 15 already done" in capsys.readouterr().out
    for stage in STAGE_NAMES:
        for shard in range(3):
            assert marker(run_dir, stage, shard) == marker(finished_run, stage, shard)


def test_unreadable_kept_answers_and_journal_lines_are_asked_again(
    finished_run: Path,
    run_dir: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    for name in ("labels/shard-00001.parquet", "labels/answers-00001.parquet"):
        (run_dir / name).write_bytes(b"PAR1 torn")
    journal = run_dir / "journal/labels/shard-00001.jsonl"
    journal.parent.mkdir(parents=True, exist_ok=True)
    journal.write_bytes(b'\xff\xfe{"key": 1}\n{"key": "k", "result": {"bogus": 1}}\n{"ke')
    with caplog.at_level(logging.WARNING, logger="emopillars"):
        assert main(run_args(finished_run, run_dir)) == 0
    assert "labels shard 1: its kept answers labels/answers-00001.parquet are unreadable" in (
        caplog.text
    )
    out = capsys.readouterr().out
    assert "1 stage shards computed, 14 already done" in out and "0 requests sent" not in out
    assert not journal.exists()
    assert dataset_contents(run_dir) == dataset_contents(finished_run)  # the engine is seeded


# -- story shards, plan.json, run.json -----------------------------------------------------


def test_a_truncated_story_shard_is_rebuilt_from_the_corpus(
    finished_run: Path,
    run_dir: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = run_dir / "stories/shard-00001.parquet"
    path.write_bytes(path.read_bytes()[:100])
    assert main(["assemble", str(run_dir)]) == 1
    assert "stories/shard-00001.parquet is unreadable" in capsys.readouterr().err

    with caplog.at_level(logging.WARNING, logger="emopillars"):
        assert main(run_args(finished_run, run_dir)) == 0
    assert "shard-00001.parquet is unreadable" in caplog.text
    assert "rebuilding it from the corpus" in caplog.text
    # The same bytes as before: every marker downstream still holds.
    assert path.read_bytes() == (finished_run / "stories/shard-00001.parquet").read_bytes()
    assert "0 stage shards computed, 15 already done" in capsys.readouterr().out
    assert dataset_contents(run_dir) == dataset_contents(finished_run)


def test_a_corrupt_plan_is_rebuilt_by_a_single_worker(
    finished_run: Path,
    run_dir: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    (run_dir / "plan.json").write_bytes(b"\x00\xff garbage")
    assert main(["status", str(run_dir)]) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [err.rstrip("\n")]
    assert f"{run_dir / 'plan.json'} is unreadable (not text" in err

    with caplog.at_level(logging.WARNING, logger="emopillars"):
        assert main(run_args(finished_run, run_dir)) == 0
    assert "plan.json is unreadable (not text" in caplog.text and "rebuilding it" in caplog.text
    expected = json.loads((finished_run / "plan.json").read_text())
    rebuilt = json.loads((run_dir / "plan.json").read_text())
    assert {**rebuilt, "run_fingerprint": ""} == {**expected, "run_fingerprint": ""}
    assert "0 stage shards computed, 15 already done" in capsys.readouterr().out


def test_a_corrupt_plan_stops_a_worker_of_several_with_one_line(
    finished_run: Path, run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = run_dir / "plan.json"
    plan.write_text('{"shards": 3, "stor')  # torn
    worker = run_args(finished_run, run_dir, "--num-workers", "2", "--worker-index", "1")
    assert main(worker) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"emopillars: {plan} is unreadable (not valid JSON: Unterminated string starting at: "
        "line 1 column 15): workers of several cannot rebuild it while others may use it: "
        "stop every worker, delete it and start them all again (finished shards whose files "
        "are intact are kept)"
    ]
    assert plan.read_text() == '{"shards": 3, "stor'  # left for the person to decide
    with pytest.raises(CorruptFileError):  # --debug: the error itself, with its traceback
        main(["--debug", *worker])


CORRUPTIONS = {
    "plan.json": ("plan.json", b'{"shards": "three"}', ["status"], "not a plan"),
    "run.json": ("run.json", b"[1, 2", ["assemble"], "not valid JSON"),
    "a marker": ("manifest/rewrites/shard-00002.json", b"\xfe\xff", ["assemble"], "not text"),
    "a stage shard": ("labels/shard-00000.parquet", b"PAR1", ["assemble"], "changed after it"),
    "kept answers": ("labels/answers-00000.parquet", b"", ["assemble", "--check"], "changed"),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_corrupt_run_state_is_one_line_naming_the_file_and_exit_1(
    case: str, run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name, content, command, problem = CORRUPTIONS[case]
    (run_dir / name).write_bytes(content)
    argv = [command[0], str(run_dir), *command[1:]]
    assert main(argv) == 1
    captured = capsys.readouterr()
    said = captured.err or captured.out
    assert name in said and problem in said and "Traceback" not in said
    assert "emopillars run" in said  # what to do
    if command == ["status"] or name == "run.json":
        assert said.splitlines() == [said.rstrip("\n")]
        with pytest.raises(CorruptFileError):
            main(["--debug", *argv])


def test_plan_json_and_run_json_are_written_only_when_they_change(
    finished_run: Path, run_dir: Path
) -> None:
    kept = ["plan.json", "run.json", "stories/shard-00000.parquet", "stories/rejects.parquet"]
    main(run_args(finished_run, run_dir))  # the copy's own output path is now in run.json
    before = {name: os.stat(run_dir / name) for name in kept}
    assert main(run_args(finished_run, run_dir)) == 0
    for name in kept:
        after = os.stat(run_dir / name)
        assert (after.st_ino, after.st_mtime_ns) == (before[name].st_ino, before[name].st_mtime_ns)


# -- reading commands ----------------------------------------------------------------------

READING = (["status"], ["status", "--json"], ["report"], ["report", "--json"],
           ["assemble", "--check"])  # fmt: skip


def test_reading_commands_write_nothing_to_the_run_folder(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(run_dir)
    for command in READING:
        assert main([command[0], str(run_dir), *command[1:]]) == 0, command
    staging = tmp_path / "staging"
    assert main(["publish", str(run_dir), "--repo-id", "alice/emo", "--dry-run", str(staging)]) == 0
    assert (staging / "README.md").is_file()
    assert snapshot(run_dir) == before


@contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """`folder` on a read-only file system: a read-only bind mount as root (for whom
    permissions do not bite), else the write permissions taken away."""
    if os.geteuid() != 0:
        subprocess.run(["chmod", "-R", "a-w", str(folder)], check=True)
        try:
            yield
        finally:
            subprocess.run(["chmod", "-R", "u+w", str(folder)], check=True)
        return
    mounted = subprocess.run(
        ["mount", "--bind", "-o", "ro", str(folder), str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"root, and no read-only bind mount here: {mounted.stderr!r}")
    try:
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_finished_run_on_a_read_only_file_system_can_be_inspected_and_published(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(run_dir)
    staging = tmp_path / "elsewhere" / "staging"
    with read_only(run_dir):
        with pytest.raises(OSError):  # it is read-only indeed
            (run_dir / "probe").write_text("x")
        for command in READING:
            assert main([command[0], str(run_dir), *command[1:]]) == 0, command
        publish = ["publish", str(run_dir), "--repo-id", "alice/emo", "--dry-run", str(staging)]
        assert main(publish) == 0
        assert "dry run: wrote the tree" in capsys.readouterr().out
    assert (staging / "context_less/train-00000-of-00001.parquet").is_file()
    assert snapshot(run_dir) == before


# -- the config file -----------------------------------------------------------------------

CONFIG_FILES = {
    "binary": (bytes(range(256)) * 4, "is not a text file (it holds NUL bytes)"),
    "not UTF-8": (b"engine: fake\nmodel: \xff\xfe\n", "is not a text file (invalid start byte"),
    "not YAML": (b"engine: [fake,\n  model", "is not valid YAML: expected ',' or ']'"),
    "not a mapping": (b"- engine\n- fake\n", "must be a mapping of field: value"),
}


@pytest.mark.parametrize("case", list(CONFIG_FILES))
def test_a_config_file_that_is_no_yaml_mapping_is_one_line_and_exit_2(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    content, problem = CONFIG_FILES[case]
    path = tmp_path / "run.yaml"
    path.write_bytes(content)
    argv = ["run", "--config", str(path), "--engine", "fake", "--output", str(tmp_path / "out")]
    assert main(argv) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"emopillars: config {path} {problem}")
    assert not (tmp_path / "out").exists()
