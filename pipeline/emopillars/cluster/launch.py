"""`emopillars launch --gpus 0,1,2,3 ...`: one worker process per GPU on this node.

Each worker is an ordinary `emopillars run ... --num-workers N --worker-index I` that sees a
single GPU through CUDA_VISIBLE_DEVICES, so each loads its own engine: data parallel, the way
to use several GPUs for a model that fits on one. Workers log to DIR/logs/worker-I.log. The
caller assembles the dataset once every worker has succeeded.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from emopillars.config import ConfigError
from emopillars.run.layout import RunLayout


@dataclass(frozen=True)
class WorkerExit:
    index: int
    gpu: str
    returncode: int
    log: Path

    @property
    def ok(self) -> bool:
        return self.returncode == 0


# What CUDA_VISIBLE_DEVICES takes: an index, or a GPU or MIG UUID (MIG-GPU-<uuid>/g/c in
# older drivers).
_GPU_ID = re.compile(r"[0-9]+|(?:GPU|MIG)-[0-9A-Za-z/-]+")


def parse_gpus(text: str) -> list[str]:
    """The CUDA_VISIBLE_DEVICES of each worker: `0,1,2,3` gives four workers of one GPU, and
    `0+1,2+3` two workers of two GPUs (for tensor parallelism). Ids are passed on as they are,
    so GPU UUIDs work too."""
    workers = [[gpu.strip() for gpu in part.split("+")] for part in text.split(",")]
    if not all(_GPU_ID.fullmatch(gpu) for worker in workers for gpu in worker):
        # CUDA takes what it cannot read as "no GPU": a typo would run on the CPU, or fail late.
        raise ConfigError(
            f"--gpus {text!r}: give a comma-separated list of GPU ids, e.g. 0,1 (0+1 for a "
            "worker with two GPUs): indexes, or UUIDs as nvidia-smi -L prints them (GPU-..., "
            "MIG-...)"
        )
    owner: dict[str, int] = {}  # GPU -> the worker that named it first
    for index, worker in enumerate(workers):
        for gpu in worker:
            if gpu not in owner:
                owner[gpu] = index
            elif owner[gpu] == index:
                raise ConfigError(
                    f"--gpus {text!r} names GPU {gpu} twice for one worker: give each of its "
                    "GPUs once"
                )
            else:
                raise ConfigError(
                    f"--gpus {text!r} names GPU {gpu} twice: two workers would share it"
                )
    return [",".join(worker) for worker in workers]


def worker_command(run_args: Sequence[str], index: int, count: int) -> list[str]:
    """The worker's command line: this interpreter, so the worker runs this installation."""
    return [
        sys.executable,
        "-m",
        "emopillars",
        "run",
        *run_args,
        "--num-workers",
        str(count),
        "--worker-index",
        str(index),
    ]


def log_tail(path: Path, lines: int = 10) -> list[str]:
    text = path.read_text(encoding="utf-8", errors="replace")
    return text.splitlines()[-lines:]


def launch_workers(
    run_dir: Path,
    gpus: Sequence[str],
    run_args: Sequence[str],
    on_exit: Callable[[WorkerExit], None] | None = None,
) -> list[WorkerExit]:
    """Start one worker per GPU, wait for all of them, and return their exits by index.

    `on_exit` hears of each worker as it ends. If this process is interrupted, the workers
    are terminated (their finished shards are kept: a rerun resumes)."""
    layout = RunLayout(run_dir)
    layout.logs.mkdir(parents=True, exist_ok=True)
    started: list[tuple[int, str, Path, subprocess.Popen[bytes]]] = []
    # One waiting thread per worker, so that each is reported as soon as it ends.
    pool = ThreadPoolExecutor(max_workers=len(gpus))
    try:
        for index, gpu in enumerate(gpus):
            log = layout.worker_log(index)
            command = worker_command(run_args, index, len(gpus))
            environment = {
                **os.environ,
                "CUDA_VISIBLE_DEVICES": gpu,
                "PYTHONUNBUFFERED": "1",
                # `python -m` would put the working folder first on sys.path, where a user's
                # own `emopillars/` folder could shadow the installed package (Python 3.11+).
                "PYTHONSAFEPATH": "1",
            }
            # Appended, so that the log of a failed attempt survives the rerun.
            with log.open("a", encoding="utf-8") as handle:
                stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
                handle.write(f"=== {stamp} CUDA_VISIBLE_DEVICES={gpu} {shlex.join(command)}\n")
                handle.flush()
                process = subprocess.Popen(
                    command, stdout=handle, stderr=subprocess.STDOUT, env=environment
                )
            started.append((index, gpu, log, process))
        waits = {pool.submit(process.wait): (i, gpu, log) for i, gpu, log, process in started}
        exits: dict[int, WorkerExit] = {}
        for done in as_completed(waits):
            index, gpu, log = waits[done]
            exits[index] = WorkerExit(index, gpu, done.result(), log)
            if on_exit is not None:
                on_exit(exits[index])
        return [exits[index] for index in sorted(exits)]
    except BaseException:
        # Interrupted: stop the workers first, so that the waiting threads can end.
        for *_, process in started:
            if process.poll() is None:
                process.terminate()
        for *_, process in started:
            process.wait()
        raise
    finally:
        pool.shutdown(wait=True)
