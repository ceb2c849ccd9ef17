"""The commands for runs spread over several processes: `launch` and `assemble`, and what a
worker of several prints. main.py parses; these make the library calls and report."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from emopillars.api import RunResult, assemble_run, check_run_folder
from emopillars.cli.exit_codes import ExitCode
from emopillars.cli.failures import check_output_folder, fail
from emopillars.cli.options import flag_of
from emopillars.cluster.launch import WorkerExit, launch_workers, log_tail, parse_gpus
from emopillars.config import ConfigError, ExecutionOptions, RunConfig, load_config
from emopillars.dataset.assemble import IncompleteRunError
from emopillars.run.check import check_lines
from emopillars.run.integrity import BrokenChainError
from emopillars.run.lock import RunFolderBusy, check_joinable, exclusive
from emopillars.run.plan import describe_missing
from emopillars.run.status import status_table
from emopillars.run.storage import StorageError
from emopillars.secrets import redact_url


def add_cluster_commands(commands: Any) -> None:
    """Add `launch` and `assemble` to the subcommands (`commands` is argparse's subparsers)."""
    launch = commands.add_parser(
        "launch",
        help="run one worker per GPU on this node, then assemble",
        description="Start one `emopillars run` worker per GPU (CUDA_VISIBLE_DEVICES), each "
        "logging to DIR/logs/worker-I.log; assemble the dataset when all succeed. Every other "
        "flag is a flag of `emopillars run`.",
    )
    launch.add_argument(
        "--gpus",
        required=True,
        help="a worker per comma-separated GPU id, e.g. 0,1,2,3 (0+1,2+3: two GPUs each)",
    )
    assemble = commands.add_parser(
        "assemble", help="build DIR/dataset once every worker's shards are done"
    )
    assemble.add_argument("run_dir", type=Path)
    assemble.add_argument(
        "--check",
        action="store_true",
        help="verify the integrity chain (and the dataset, if assembled) and report; write "
        "nothing. Exit 1 when assembling would be refused",
    )


def worker_banner(config: RunConfig) -> str:
    devices = os.environ.get("CUDA_VISIBLE_DEVICES", "not set")
    index, count = config.execution.worker_index, config.execution.num_workers
    return (
        f"worker {index} of {count}: story shards s with s % {count} == {index} "
        f"(CUDA_VISIBLE_DEVICES={devices})"
    )


def worker_summary(config: RunConfig, result: RunResult) -> str:
    shards = [str(shard) for shard in result.story_shards]
    listed = ", ".join(shards[:20]) + (f", ... ({len(shards)} in all)" if len(shards) > 20 else "")
    index, count = config.execution.worker_index, config.execution.num_workers
    return (
        f"worker {index} of {count} done: story shards {listed or 'none'}\n"
        f"when all {count} workers are done, build the dataset with: "
        f"emopillars assemble {result.run_dir}"
    )


def _print_dataset(run_dir: Path, counts: dict[str, dict[str, int]]) -> None:
    print(status_table(run_dir))
    print()
    for name, splits in counts.items():
        print(f"dataset {name}: " + ", ".join(f"{s} {n}" for s, n in splits.items()))
    print(f"dataset folder: {run_dir / 'dataset'}")


def assemble_command(run_dir: Path, *, debug: bool = False, check: bool = False) -> int:
    if check:
        return _check_command(run_dir, debug=debug)
    try:
        # The folder's one writer while it assembles: no run or worker writes meanwhile.
        with exclusive(run_dir, "emopillars assemble", sweep=True):
            counts = assemble_run(run_dir)
    except (FileNotFoundError, RunFolderBusy) as error:
        return fail(error, ExitCode.USAGE, debug=debug)
    except (IncompleteRunError, BrokenChainError, StorageError) as error:
        return fail(error, ExitCode.FAILED, debug=debug)
    _print_dataset(run_dir, counts)
    return ExitCode.OK


def _check_command(run_dir: Path, *, debug: bool) -> int:
    """`assemble --check`: what assembling would find, and the dataset's state; reads only."""
    try:
        checked = check_run_folder(run_dir)
    except FileNotFoundError as error:
        return fail(error, ExitCode.USAGE, debug=debug)
    except StorageError as error:
        return fail(error, ExitCode.FAILED, debug=debug)
    print("\n".join(check_lines(run_dir, checked)))
    chain = checked.chain
    if chain.missing:
        print(
            f"not ready to assemble: {len(chain.missing)} of {chain.total} stage shards are "
            "not done:\n" + describe_missing(chain.missing, checked.num_workers)
        )
    elif chain.intact and checked.dataset_state != "current":
        print(f"ready to assemble: `emopillars assemble {run_dir}` builds the dataset")
    return ExitCode.OK if chain.intact and not chain.missing else ExitCode.FAILED


def _launch_config(config_file: Path | None, overrides: dict[str, Any], workers: int) -> RunConfig:
    """The config every worker will run with, checked before any worker starts."""
    taken = sorted(set(ExecutionOptions.model_fields) & set(overrides.get("execution", {})))
    if taken:
        flags = ", ".join(flag_of("execution", name) for name in taken)
        raise ConfigError(
            f"launch sets the workers itself, one per GPU: leave out {flags} "
            "(for Ray, use `emopillars run --executor ray`)"
        )
    execution = {"num_workers": workers, "worker_index": 0}
    config = load_config(config_file, **{**overrides, "execution": execution})
    if config.execution.executor != "local":
        raise ConfigError("launch runs local workers: remove `executor` from the config file")
    check_output_folder(config.output_dir)
    return config


def _report(worker: WorkerExit) -> None:
    if worker.ok:
        print(f"worker {worker.index} (GPU {worker.gpu}) done", flush=True)
        return
    code = worker.returncode
    how = f"exit code {code}" if code > 0 else f"killed by signal {-code}"
    print(f"worker {worker.index} (GPU {worker.gpu}) FAILED, {how}; log: {worker.log}", flush=True)
    for line in log_tail(worker.log):
        print(f"  | {redact_url(line)}", flush=True)


def launch_command(
    gpus_flag: str,
    run_args: Sequence[str],
    config_file: Path | None,
    overrides: dict[str, Any],
    *,
    debug: bool = False,
) -> int:
    """`emopillars launch`: `run_args` are the `run` flags as given, passed on to each worker;
    `config_file` and `overrides` are those flags parsed."""
    try:
        gpus = parse_gpus(gpus_flag)
        config = _launch_config(config_file, overrides, len(gpus))
        # Found once here, rather than by every worker in its own log.
        check_joinable(config.output_dir)
    except (ConfigError, RunFolderBusy) as error:
        return fail(error, ExitCode.USAGE, debug=debug)
    run_dir = config.output_dir
    print(f"launching {len(gpus)} workers, logs in {run_dir / 'logs'}", flush=True)
    exits = launch_workers(run_dir, gpus, run_args, on_exit=_report)
    failed = [worker for worker in exits if not worker.ok]
    if failed:
        print(
            f"emopillars: {len(failed)} of {len(exits)} workers failed, so the dataset was not "
            "assembled. Finished shards are kept: fix the cause and run the same launch "
            "command again (it resumes).",
            file=sys.stderr,
        )
        return ExitCode.FAILED
    return assemble_command(run_dir, debug=debug)
