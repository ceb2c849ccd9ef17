"""Messages, not tracebacks: every failure of a command is one line naming the path and what
to do, and an exit code; `emopillars --debug` shows the traceback instead; a reader that
closes the pipe early ends the command quietly."""

from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import fake_config
from emopillars.api import run_pipeline
from emopillars.cli import main
from emopillars.cli.failures import RESUME_HINT


def emopillars(*args: str, stdout: int = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "emopillars", *args],
        stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=120, check=False,
    )  # fmt: skip


def fake_run_args(corpus: Path, output: Path) -> list[str]:
    return ["run", "--engine", "fake", "--corpus", str(corpus), "--output", str(output),
            "--max-stories", "2", "--quiet"]  # fmt: skip


@pytest.fixture
def finished(corpus: Path, tmp_path: Path) -> Path:
    config = fake_config(corpus, tmp_path / "finished", max_stories=2)
    run_pipeline(config)
    return config.output_dir


# -- a closed pipe -------------------------------------------------------------------------


def test_a_reader_gone_before_the_output_ends_the_command_quietly(finished: Path) -> None:
    # As `emopillars status DIR --json | head -0`: the reader is gone before the first write,
    # so the write fails for certain (a reader that goes after one line races the writer).
    reader, writer = os.pipe()
    os.close(reader)
    try:
        result = emopillars("status", str(finished), "--json", stdout=writer)
    finally:
        os.close(writer)
    assert result.stderr == ""  # no traceback, not even "Exception ignored"
    assert result.returncode == 1  # not all the output was delivered (Python's docs' choice)


def test_a_reader_that_takes_one_line_sees_no_traceback(finished: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "emopillars", "status", str(finished), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    first = process.stdout.readline()
    process.stdout.close()
    errors = process.stderr.read()
    code = process.wait(timeout=120)
    assert first == "{\n"
    assert errors == ""
    assert code in (0, 1)  # 0 when the whole output fitted into the pipe before it closed


# -- a path in the way ---------------------------------------------------------------------


@pytest.mark.parametrize("inside", [False, True])
def test_an_output_that_is_a_file_is_refused_before_any_work(
    inside: bool, corpus: Path, tmp_path: Path
) -> None:
    file = tmp_path / "results"
    file.write_text("not a folder\n")
    output = file / "run" if inside else file
    result = emopillars(*fake_run_args(corpus, output))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"emopillars: --output {output} "
        + (f"is inside {file}, which is" if inside else "is")
        + " a file, not a folder: choose another --output"
    ]
    assert file.read_text() == "not a folder\n"


@pytest.mark.parametrize(
    ("in_the_way", "message"),
    [
        ("manifest", "cannot use {path}/actors: Not a directory; a file is where a folder"),
        ("manifest/actors", "cannot create {path}: File exists; a file is in the way"),
    ],
)
def test_a_file_where_the_run_needs_a_folder_is_one_line_and_exit_1(
    in_the_way: str,
    message: str,
    corpus: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    output = tmp_path / "run"
    blocker = output / in_the_way
    blocker.parent.mkdir(parents=True)
    blocker.write_text("in the way\n")
    assert main(fake_run_args(corpus, output)) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"emopillars: {message.format(path=blocker)}")


@pytest.mark.parametrize("in_the_way", ["plan.json", "run.json"])
def test_a_folder_where_the_run_needs_a_file_says_to_move_it_and_a_rerun_heals(
    in_the_way: str, finished: Path, corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = finished / in_the_way
    blocker.unlink()
    blocker.mkdir()
    args = fake_run_args(corpus, finished)
    assert main(args) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line == (
        f"emopillars: cannot open {blocker}: Is a directory; a folder is where a file should "
        "be: move or remove it"
    )
    blocker.rmdir()  # as told
    assert main(args) == 0
    assert "0 requests sent" in capsys.readouterr().out


def test_a_file_in_the_way_shows_no_traceback_in_a_real_process(
    corpus: Path, tmp_path: Path
) -> None:
    output = tmp_path / "run"
    output.mkdir()
    (output / "manifest").write_text("in the way\n")
    result = emopillars(*fake_run_args(corpus, output))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"emopillars: cannot use {output / 'manifest'}" in result.stderr
    debugged = emopillars("--debug", *fake_run_args(corpus, output))
    assert debugged.returncode == 1
    assert "Traceback" in debugged.stderr and "NotADirectoryError" in debugged.stderr


# -- errors a test cannot cause for real (the tests run as root: chmod stops nothing) --------


@pytest.mark.parametrize(
    ("code", "line"),
    [
        (errno.ENOSPC, "cannot write {path}: No space left on device; free some space, then run "
                       "the same command again"),
        (errno.EROFS, "cannot write {path}: Read-only file system; the file system is "
                      "read-only: choose a writable folder"),
        (errno.EACCES, "cannot access {path}: Permission denied; check its permissions, or "
                       "choose another path"),
    ],
)  # fmt: skip
def test_a_failing_disk_is_one_line_naming_the_path_and_exit_1(
    code: int,
    line: str,
    corpus: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import emopillars.run.runner

    output = tmp_path / "run"

    def failing_write(layout: object, record: object) -> None:
        raise OSError(code, os.strerror(code), str(output / "run.json"))

    monkeypatch.setattr(emopillars.run.runner, "write_run_record", failing_write)
    assert main(fake_run_args(corpus, output)) == 1
    assert capsys.readouterr().err.splitlines() == [
        "emopillars: " + line.format(path=output / "run.json")
    ]
    with pytest.raises(OSError) as raised:  # --debug: the error itself, with its traceback
        main(["--debug", *fake_run_args(corpus, output)])
    assert raised.value.errno == code


class _FullDiskFile:
    """A file on a full disk: opening works, writing does not (as ENOSPC shows itself)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> _FullDiskFile:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def write(self, text: str) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def close(self) -> None:
        # A file whose write failed still has it buffered: closing flushes it, and fails too.
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("where", ["journal", "stage shard"])
def test_a_disk_that_fills_mid_run_names_the_file_says_what_to_do_and_a_rerun_finishes(
    where: str,
    corpus: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A write's own ENOSPC names no file (the journal's append, the bytes of a Parquet
    file): the line names the file being written, not a temporary name, with the advice."""
    output = tmp_path / "run"
    real_open, real_write = Path.open, os.write
    full = output / ("journal/labels" if where == "journal" else "labels/shard-00000.parquet")

    def full_disk_open(self: Path, *args: Any, **kwargs: Any) -> object:
        if self.parent == full:
            return _FullDiskFile(self)
        return real_open(self, *args, **kwargs)

    def full_disk_write(descriptor: int, data: object) -> int:
        if os.readlink(f"/proc/self/fd/{descriptor}").startswith(f"{full.parent}/.{full.name}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(descriptor, data)  # type: ignore[arg-type]

    if where == "journal":
        monkeypatch.setattr(Path, "open", full_disk_open)
    else:
        monkeypatch.setattr(os, "write", full_disk_write)
    assert main(fake_run_args(corpus, output)) == 1
    line, hint = capsys.readouterr().err.splitlines()
    assert hint == RESUME_HINT
    # The journal of whichever labels shard was answered first.
    path = (
        re.escape(f"{full}/shard-") + r"\d{5}\.jsonl"
        if where == "journal"
        else re.escape(str(full))
    )
    assert re.fullmatch(
        f"emopillars: cannot write {path}: No space left on device; free some space, then run "
        "the same command again",
        line,
    )
    assert not list(output.rglob(".*.tmp"))  # no temporary file is left behind
    monkeypatch.undo()  # space freed
    assert main(fake_run_args(corpus, output)) == 0


def test_debug_raises_what_is_otherwise_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", str(tmp_path)]) == 2
    line = capsys.readouterr().err
    assert line.startswith("emopillars: ") and "not an emopillars run folder" in line
    with pytest.raises(Exception, match="not an emopillars run folder"):
        main(["--debug", "status", str(tmp_path)])


# -- misuse found before any work ------------------------------------------------------------


def test_an_empty_output_is_refused_rather_than_the_working_folder_used(
    corpus: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as usage:
        main(["run", "--engine", "fake", "--corpus", str(corpus), "--output", "", "--quiet"])
    assert usage.value.code == 2
    assert "argument --output: is empty" in capsys.readouterr().err
    assert [path.name for path in tmp_path.iterdir()] == [corpus.name]  # nothing new


def test_an_output_inside_another_run_folder_is_refused(
    finished: Path, corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = sorted(finished.rglob("*"))
    nested = finished / "dataset" / "again"
    assert main(fake_run_args(corpus, nested)) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert f"--output {nested} is inside the run folder {finished}" in line
    assert sorted(finished.rglob("*")) == before


def test_an_output_name_that_is_not_utf8_is_refused_in_one_line(
    corpus: Path, tmp_path: Path
) -> None:
    output = os.fsdecode(os.fsencode(tmp_path) + b"/bad\xffname")
    result = emopillars(*fake_run_args(corpus, Path(output)))
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "is not UTF-8 text" in line and "LC_ALL=C.UTF-8" in line
    assert not Path(output).exists()


def test_a_model_that_is_no_gguf_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "model.bin"
    model.write_bytes(b"PK\x03\x04 a zip, say")
    assert main(["run", "--model", str(model), "--output", str(tmp_path / "run")]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert f"model {model} is not a GGUF file" in line
    assert not (tmp_path / "run").exists()


def test_a_missing_vllm_is_a_usage_error_without_a_resume_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # vLLM is not installed in the main test environment (tests_vllm/ runs it for real).
    code = main(["run", "--engine", "vllm", "--model", "m", "--output", str(tmp_path / "r")])
    assert code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "emopillars[vllm]" in line


def test_a_closed_stdout_is_no_traceback(tmp_path: Path) -> None:
    # `emopillars status DIR >&-`: Python starts with sys.stdout None.
    command = f"{sys.executable} -m emopillars status {tmp_path / 'none'} >&-"
    result = subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 2
    assert result.stderr.strip().endswith("is not an emopillars run folder (no plan.json)")
    assert "Traceback" not in result.stderr


# -- signals -----------------------------------------------------------------------------------


def slow_run(corpus: Path, output: Path) -> subprocess.Popen[str]:
    """A run slow enough (fake answers 0.05 s each, one at a time) to be stopped midway."""
    args = ["run", "--engine", "fake", "--corpus", str(corpus), "--output", str(output),
            "--shard-size", "1", "--max-actors", "2", "--fake-latency-s", "0.05",
            "--max-in-flight", "1", "--quiet"]  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-m", "emopillars", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_for_a_finished_shard(process: subprocess.Popen[str], run_dir: Path) -> None:
    deadline = time.monotonic() + 120
    while not list((run_dir / "manifest").glob("*/shard-*.json")):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no shard was finished"
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("signum", "code", "how"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "stopped by SIGTERM")],
)
def test_a_stopped_run_says_so_in_one_line_and_resumes(
    corpus: Path, tmp_path: Path, signum: int, code: int, how: str
) -> None:
    run_dir = tmp_path / "run"
    process = slow_run(corpus, run_dir)
    wait_for_a_finished_shard(process, run_dir)
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    assert process.returncode == code, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"emopillars: {how}; finished shards are kept; run the same command again to resume"
    )
    rerun = emopillars(*fake_run_args(corpus, run_dir)[:-3], "--shard-size", "1",
                       "--max-actors", "2", "--quiet")  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr
