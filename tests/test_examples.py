"""The cluster examples run as written: their shell scripts pass `bash -n` and, run with
stand-ins for srun, sbatch and ray, hand `emopillars` commands that its own parser accepts and
that make a valid config; the Kubernetes manifests agree with themselves and the image."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from emopillars.cli.main import _overrides, _parser
from emopillars.config import RunConfig, load_config

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "examples"
SCRIPTS = sorted([*EXAMPLES.rglob("*.sh"), *EXAMPLES.rglob("*.sbatch")])

# Stand-ins: each logs its name and arguments as one JSON line; srun runs its command, and
# sbatch answers like `sbatch --parsable` on a federated cluster.
RECORDER = """#!{python}
import json, os, subprocess, sys
name = os.path.basename(sys.argv[0])
with open(os.environ["STUB_LOG"], "a") as log:
    log.write(json.dumps([name, *sys.argv[1:]]) + "\\n")
if name == "srun":
    sys.exit(subprocess.call(sys.argv[1:]))
if name == "sbatch":
    print("4242;cluster")
"""


def run_with_stubs(script: Path, tmp_path: Path, env: dict[str, str]) -> list[list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in ("emopillars", "srun", "sbatch", "ray"):
        stub = bin_dir / name
        stub.write_text(RECORDER.format(python=sys.executable))
        stub.chmod(0o755)
    log = tmp_path / "calls.jsonl"
    log.unlink(missing_ok=True)
    environment = {**os.environ, **env, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    environment["STUB_LOG"] = str(log)
    result = subprocess.run(
        ["bash", str(script)], env=environment, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in log.read_text().splitlines()]


def emopillars_config(argv: list[str]) -> RunConfig:
    """What `emopillars run ARGV...` would run with (argparse exits on a bad flag)."""
    args = _parser().parse_args(argv)
    assert args.command == "run"
    return load_config(args.config, **_overrides(args))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_scripts_are_valid_bash(script: Path) -> None:
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_slurm_array_task_runs_its_own_worker(tmp_path: Path) -> None:
    script = EXAMPLES / "slurm" / "array.sbatch"
    corpus = tmp_path / "plots.jsonl"
    corpus.write_text("")
    env = {"RUN_DIR": str(tmp_path / "run"), "CORPUS": str(corpus), "SLURM_ARRAY_TASK_ID": "5"}
    calls = run_with_stubs(script, tmp_path, env)
    assert [call[0] for call in calls] == ["srun", "emopillars"]
    config = emopillars_config(calls[1][1:])
    assert (config.engine, config.execution.worker_index) == ("vllm", 5)
    assert config.output_dir == tmp_path / "run" and config.corpus == corpus
    # WORKERS in the script is the size of its --array range.
    text = script.read_text()
    array = re.search(r"^#SBATCH --array=0-(\d+)$", text, re.MULTILINE)
    assert array is not None and config.execution.num_workers == int(array[1]) + 1


def test_the_slurm_submission_queues_the_assembly_after_all_tasks(tmp_path: Path) -> None:
    run_dir = tmp_path / "run dir"  # a space, to check the quoting of --wrap
    env = {"RUN_DIR": str(run_dir), "CORPUS": str(tmp_path / "plots.jsonl")}
    calls = run_with_stubs(EXAMPLES / "slurm" / "submit.sh", tmp_path, env)
    workers, assembly = calls
    assert workers[0] == "sbatch" and workers[-1].endswith("array.sbatch")
    assert "--dependency=afterok:4242" in assembly  # the job id, without ";cluster"
    wrap = next(arg.removeprefix("--wrap=") for arg in assembly if arg.startswith("--wrap="))
    command = shlex.split(wrap)
    assert command[0] == "emopillars"
    args = _parser().parse_args(command[1:])
    assert args.command == "assemble" and args.run_dir == run_dir


def test_the_ray_submission_runs_the_ray_executor(tmp_path: Path) -> None:
    corpus = tmp_path / "plots.jsonl"
    corpus.write_text("")
    env = {"RUN_DIR": str(tmp_path / "run"), "CORPUS": str(corpus)}
    calls = run_with_stubs(EXAMPLES / "ray" / "submit.sh", tmp_path, env)
    [call] = calls
    assert call[:2] == ["ray", "job"] and "--" in call
    entrypoint = call[call.index("--") + 1 :]
    assert entrypoint[0] == "emopillars"
    config = emopillars_config(entrypoint[1:])
    assert (config.execution.executor, config.engine, config.execution.num_workers) == (
        "ray",
        "vllm",
        1,
    )
    assert config.output_dir == tmp_path / "run" and config.corpus == corpus


def _documents(name: str) -> list[dict[str, Any]]:
    text = (EXAMPLES / "kubernetes" / name).read_text()
    return [document for document in yaml.safe_load_all(text) if document]


def _dockerfile_user() -> int:
    users = re.findall(r"^USER (\d+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    return int(users[-1])


def test_the_kubernetes_indexed_job_is_consistent(tmp_path: Path) -> None:
    documents = _documents("indexed-job.yaml")
    claims = {
        doc["metadata"]["name"]: doc for doc in documents if doc["kind"] == "PersistentVolumeClaim"
    }
    [job] = [doc for doc in documents if doc["kind"] == "Job"]
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"]
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"  # backoffLimitPerIndex needs it
    assert pod["securityContext"]["runAsUser"] == _dockerfile_user()
    [container] = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert {"HF_TOKEN"} == {variable["name"] for variable in container["env"]}

    # The arguments are an `emopillars run` (the image's entrypoint) for this Job's size; the
    # index comes from JOB_COMPLETION_INDEX, which Kubernetes sets in each pod.
    args = container["args"]
    corpus = tmp_path / "plots.jsonl"
    corpus.write_text("")
    local = [f"--corpus={corpus}" if arg.startswith("--corpus=") else arg for arg in args]
    config = emopillars_config(local)
    assert config.execution.num_workers == spec["completions"]
    assert "--worker-index" not in " ".join(args)

    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    for path in ("/outputs", "/cache/huggingface"):
        claim = volumes[mounts[path]]["persistentVolumeClaim"]["claimName"]
        assert claims[claim]["spec"]["accessModes"] == ["ReadWriteMany"]
    corpus_arg = next(arg for arg in args if arg.startswith("--corpus="))
    output_arg = next(arg for arg in args if arg.startswith("--output="))
    assert corpus_arg.removeprefix("--corpus=").startswith("/outputs/")
    assert output_arg.removeprefix("--output=").startswith("/outputs/")


def test_the_kubernetes_assembly_reads_the_workers_folder() -> None:
    [workers] = [doc for doc in _documents("indexed-job.yaml") if doc["kind"] == "Job"]
    [assembly] = _documents("assemble-job.yaml")
    worker = workers["spec"]["template"]["spec"]["containers"][0]
    assembler = assembly["spec"]["template"]["spec"]["containers"][0]
    assert assembler["image"] == worker["image"]
    args = _parser().parse_args(assembler["args"])
    output = next(arg for arg in worker["args"] if arg.startswith("--output="))
    assert args.command == "assemble"
    assert str(args.run_dir) == output.removeprefix("--output=")
    claim = assembly["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]
    assert claim["claimName"] == "emopillars-outputs"
