"""The `emopillars` command, run in-process and as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from emopillars.cli import main


def test_run_then_status_json_keeps_the_invariants(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    code = main(["run", "--engine", "fake", "--corpus", str(corpus), "--output", str(out),
                 "--shard-size", "2", "--max-actors", "2", "--quiet"])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    assert "rewrites" in printed and "fake engine was used" in printed
    assert "15 stage shards computed, 0 already done" in printed
    assert main(["status", str(out), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    stages = status["stages"]
    assert list(stages) == ["actors", "utterances", "labels", "contexts", "rewrites"]
    keys = {"shards_done", "shards_total", "inputs", "accepted", "rejected", "outputs",
            "prompt_tokens", "completion_tokens", "seconds"}  # fmt: skip
    assert all(keys <= set(stage) for stage in stages.values())
    # Telemetry: labelling prompts share their long head (definitions), so a prefix cache
    # could reuse most of each; the fake engine answers instantly.
    assert stages["labels"]["prefix_shared"] > 0.5
    assert all(stage["requests_sent"] >= stage["inputs"] for stage in stages.values())
    previous = status["stories"]
    for stage in stages.values():
        assert stage["inputs"] == stage["accepted"] + stage["rejected"] == previous
        previous = stage["outputs"]


def test_shard_events_go_once_to_the_stderr_of_each_in_process_run(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("first", "second"):
        code = main(["run", "--engine", "fake", "--corpus", str(corpus),
                     "--output", str(tmp_path / name), "--max-stories", "2"])  # fmt: skip
        assert code == 0
        lines = capsys.readouterr().err.splitlines()
        events = [json.loads(line) for line in lines if line.startswith('{"')]
        shards = [(event["stage"], event["shard"]) for event in events]
        assert len(shards) == len(set(shards)) == 5, name  # one line per stage shard, not two
        assert not any("Logging error" in line for line in lines)


def test_yaml_config_with_flag_overrides(corpus: Path, tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(
        f"engine: fake\ncorpus: {corpus}\noutput: {tmp_path / 'yaml-run'}\nmax_stories: 2\n"
        "max_actors: 1\nshard_size: 1\n"
    )
    assert main(["run", "--config", str(config), "--max-stories", "1", "--quiet"]) == 0
    plan = json.loads((tmp_path / "yaml-run" / "plan.json").read_text())
    assert plan["stories"] == 1 and plan["shards"] == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-stories", "0"], "max_stories"),
        (["--model", "/nowhere/model.gguf"], "is not a file"),
        (["--corpus", "/nowhere/stories.jsonl"], "does not exist"),
    ],
)
def test_invalid_config_fails_before_any_model_loads(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--output", str(tmp_path / "x"), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_unknown_yaml_key_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("engine: fake\nmax_actor: 3\n")
    assert main(["run", "--config", str(config)]) == 2
    assert "max_actor" in capsys.readouterr().err


def test_status_of_a_folder_that_is_no_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", str(tmp_path)]) == 2
    assert "not an emopillars run folder" in capsys.readouterr().err


def test_console_script_runs_as_a_subprocess(corpus: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "emopillars", "run", "--engine", "fake", "--corpus", str(corpus),
         "--output", str(tmp_path / "sub"), "--max-stories", "2"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "dataset context_less" in result.stdout
    # Not a terminal: one JSON line per finished stage shard, for log collectors.
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert [(e["stage"], e["shard"]) for e in events] == [
        (stage, 0) for stage in ("actors", "utterances", "labels", "contexts", "rewrites")
    ]
    assert all(e["event"] == "shard_done" and e["fingerprint"] for e in events)


def test_wheel_carries_prompts_and_sample_corpus(tmp_path: Path) -> None:
    # A non-editable install (or a container) has no source tree: the wheel must carry both.
    import zipfile

    root = Path(__file__).resolve().parent.parent
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "dist"), str(root)],
        check=True, timeout=300,
    )  # fmt: skip
    wheel = next((tmp_path / "dist").glob("emopillars-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    # One top-level package, named as the distribution and the command: nothing else.
    assert {name.split("/")[0] for name in names} == {
        "emopillars",
        wheel.name.split("-py")[0] + ".dist-info",
    }
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    # A local folder named `pipeline` (or `emopillars`) in the working folder changes nothing.
    (tmp_path / "pipeline").mkdir()
    (tmp_path / "pipeline" / "cli.py").write_text("raise SystemExit('local pipeline imported')\n")
    probe = (
        "from emopillars.resources import prompts_dir, sample_corpus;"
        "from emopillars.stages import stage_context;"
        "from emopillars.config import RunConfig;"
        "stage_context(RunConfig(engine='fake'));"
        "print(prompts_dir()); print(sample_corpus())"
    )
    # -S: no site hooks, so an editable install of this checkout cannot shadow the wheel.
    path = os.pathsep.join([str(site), sysconfig.get_paths()["purelib"]])
    result = subprocess.run(
        [sys.executable, "-S", "-c", probe], cwd=tmp_path, env={"PYTHONPATH": path},
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        str(site / "emopillars" / "_data" / "prompts"),
        str(site / "emopillars" / "_data" / "corpora" / "sample" / "stories.jsonl"),
    ]
