"""The `emopillars` command: parse flags, build a config, make one library call, exit."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from emopillars.api import EmptyResultError, run_pipeline
from emopillars.cli.classify import add_classify_commands, evaluate_command, train_command
from emopillars.cli.cluster import (
    add_cluster_commands,
    assemble_command,
    launch_command,
    worker_banner,
    worker_summary,
)
from emopillars.cli.exit_codes import ExitCode
from emopillars.cli.failures import RESUME_HINT, check_output_folder, fail, silence_stdout
from emopillars.cli.judge import add_judge_command, judge_command
from emopillars.cli.options import add_config_flags
from emopillars.cli.progress import ShardProgress
from emopillars.cluster.workers import with_scheduled_worker
from emopillars.config import ConfigError, load_config
from emopillars.dataset.measured import measured_table, read_attached
from emopillars.dataset.quality_text import quality_summary, quality_table
from emopillars.dataset.report import quality_of_run, read_quality
from emopillars.run.corpus import CorpusError
from emopillars.run.lock import RunFolderBusy, exclusive
from emopillars.run.status import status_json, status_table
from emopillars.run.storage import CorruptFileError, StorageError
from emopillars.secrets import RedactingFilter

if TYPE_CHECKING:  # publishing imports huggingface_hub: only `publish` pays for it
    from emopillars.release.hub import HubClient
    from emopillars.release.publish import PublishResult


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emopillars",
        description="Turn stories into a context-aware emotion dataset by distilling an LLM "
        "(the Emo Pillars method).",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help="on an error, show its traceback instead of one line (e.g. emopillars --debug run)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    # The flags of `run` are generated from RunConfig's fields (cli/options.py): a field's flag
    # sets it (a section's as section__field), over the YAML config.
    run = commands.add_parser(
        "run",
        help="run the pipeline (resumes an interrupted run)",
        description="Run the pipeline on a corpus; an interrupted run resumes. Every setting "
        "of the config file has a flag; flags override the file.",
    )
    run.add_argument("--config", type=Path, help="YAML file with run settings; flags override it")
    run.add_argument("--quiet", action="store_true", help="no per-shard progress lines")
    add_config_flags(run)
    add_cluster_commands(commands)
    add_classify_commands(commands)
    add_judge_command(commands)

    status = commands.add_parser("status", help="show per-stage progress of a run folder")
    status.add_argument("run_dir", type=Path)
    status.add_argument("--json", action="store_true")

    report = commands.add_parser(
        "report",
        help="quality report of a run folder (finished, or what is finished so far)",
        description="The quality of a run's data: labels, diversity, contexts, rewrites and "
        "yield per stage, beside the paper's figures. A finished run's report is "
        "DIR/dataset/quality.json; an unfinished run is measured on its finished shards.",
    )
    report.add_argument("run_dir", type=Path)
    report.add_argument("--json", action="store_true", help="print quality.json's object")

    publish = commands.add_parser(
        "publish", help="check a finished run and publish its dataset on the Hugging Face Hub"
    )
    publish.add_argument("run_dir", type=Path)
    publish.add_argument("--repo-id", required=True, help="OWNER/NAME of the dataset repo")
    publish.add_argument("--private", action="store_true", help="create the repo private")
    publish.add_argument("--revision", help="branch to publish to (created when missing)")
    publish.add_argument("--license", help="dataset license id (default: the run config's)")
    publish.add_argument(
        "--dry-run",
        type=Path,
        metavar="STAGING_DIR",
        help="write the tree that would be uploaded to this new folder; upload nothing",
    )
    publish.add_argument("--message", help="commit message")
    publish.add_argument(
        "--timeout-s",
        type=float,
        help="seconds a Hub request may wait to connect or for more of an answer before it is "
        "retried (default 60)",
    )
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for name, value in vars(args).items():
        if value is None or name in ("command", "config", "quiet", "debug"):
            continue
        section, _, field = name.rpartition("__")
        target = overrides.setdefault(section, {}) if section else overrides
        target[field] = value
    return overrides


class _CurrentStderr(logging.StreamHandler):  # type: ignore[type-arg]  # generic from 3.11
    """Writes to sys.stderr as it is when a line is logged, not when main() first ran:
    callers that run main() in-process (tests, notebooks) swap and close their streams."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def _stderr_handler() -> logging.Handler:
    # Whichever library logs a URL, its credentials do not reach the terminal or a log file.
    handler = logging.StreamHandler()
    handler.addFilter(RedactingFilter())
    return handler


def _configure_logging(quiet: bool) -> None:
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
        handlers=[_stderr_handler()],
    )
    for chatty in ("httpx", "httpx2", "openai"):  # one line per HTTP request otherwise
        logging.getLogger(chatty).setLevel(logging.WARNING)
    # Shard events are bare JSON lines that log collectors parse as they are; at a terminal,
    # where a progress line shows instead, they stay quiet.
    events = logging.getLogger("emopillars.events")
    if not any(isinstance(h, _CurrentStderr) for h in events.handlers):
        handler = _CurrentStderr()
        handler.addFilter(RedactingFilter())
        handler.setFormatter(logging.Formatter("%(message)s"))
        events.addHandler(handler)
    events.propagate = False
    events.setLevel(logging.WARNING if quiet or sys.stderr.isatty() else logging.INFO)


def _run(args: argparse.Namespace) -> int:
    overrides = _overrides(args)
    config = with_scheduled_worker(load_config(args.config, **overrides), os.environ)
    check_output_folder(config.output_dir)
    _configure_logging(args.quiet)
    if config.execution.num_workers > 1:
        print(worker_banner(config), flush=True)
    began = time.perf_counter()
    with ShardProgress() as progress:
        result = run_pipeline(config, on_shard=None if args.quiet else progress)
    print(status_table(result.run_dir))
    print()
    wall = time.perf_counter() - began
    if result.dataset_counts is None:
        print(worker_summary(config, result))
    else:
        for name, splits in result.dataset_counts.items():
            print(f"dataset {name}: " + ", ".join(f"{s} {n}" for s, n in splits.items()))
        print(f"dataset folder: {result.run_dir / 'dataset'}")
        quality = read_quality(result.run_dir / "dataset")
        if quality is not None:
            print(quality_summary(quality, result.run_dir))
    print(f"engine: {result.engine}")
    print(
        f"this run: {result.shards_computed} stage shards computed, {result.shards_skipped} "
        f"already done; {result.requests_sent} requests sent; "
        f"engine {result.engine_seconds:.1f}s of {wall:.1f}s wall"
    )
    if result.engine.startswith("fake"):
        print("NOTE: the fake engine was used: texts and labels are random, for tests only.")
    return ExitCode.OK


def _report(args: argparse.Namespace) -> int:
    report = quality_of_run(args.run_dir)
    if args.json:
        print(report.to_json(), end="")  # quality.json's text, newline included
    else:
        print(quality_table(report, args.run_dir))
        measured = read_attached(args.run_dir)
        if measured:
            print()
            print(measured_table(measured))
    return ExitCode.OK


def _publish(args: argparse.Namespace, hub: HubClient | None) -> int:
    from emopillars.release.checks import ReleaseCheckError
    from emopillars.release.hub import HubError, PublishRefused
    from emopillars.release.publish import publish, publish_options

    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
        handlers=[_stderr_handler()],
    )
    # Its line per HTTP request would bury the progress and the error.
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    try:
        options = publish_options(
            repo_id=args.repo_id,
            private=args.private,
            revision=args.revision,
            license=args.license,
            dry_run=args.dry_run,
            message=args.message,
            timeout_s=args.timeout_s,
        )
        # Publishing reads what a run writes: no run or assembly may write meanwhile.
        with exclusive(args.run_dir, "emopillars publish"):
            result = publish(args.run_dir, options, hub)
    except (ConfigError, FileNotFoundError, PublishRefused, RunFolderBusy) as error:
        # Nothing was attempted: the command or the environment must change first.
        return fail(error, ExitCode.USAGE, debug=args.debug)
    except (ReleaseCheckError, HubError, OSError) as error:
        return fail(error, ExitCode.FAILED, debug=args.debug)
    print(_publish_summary(result))
    return ExitCode.OK


def _publish_summary(result: PublishResult) -> str:
    sizes = [
        f"dataset {name}: " + ", ".join(f"{s} {n}" for s, n in splits.items())
        for name, splits in result.counts.items()
    ]
    if result.staged_to is not None:
        files = "\n".join(f"  {path}" for path in result.tree)
        return "\n".join(
            [
                f"dry run: wrote the tree for {result.repo_id} to {result.staged_to}; "
                "nothing was uploaded",
                files,
                *sizes,
            ]
        )
    if result.uploaded or result.card_committed:
        done = (
            f"{len(result.uploaded)} data files uploaded, "
            f"{len(result.unchanged)} already there"
            + (f", {len(result.deleted)} old ones deleted" if result.deleted else "")
            + "; README.md and provenance.json committed"
        )
    else:
        done = "nothing new to upload: the repo already holds this run"
    created = " (repo created)" if result.created_repo else ""
    return "\n".join([f"published to {result.url}{created}", done, *sizes])


def main(argv: Sequence[str] | None = None, hub: HubClient | None = None) -> int:
    """`hub` replaces the real Hugging Face Hub for `publish` (tests pass a fake).

    Every failure is one line on stderr (`--debug` shows the traceback instead) and an exit
    code. A reader that closes our stdout early (`emopillars status DIR --json | head -1`)
    ends the command quietly with exit code 1, as Python's docs on SIGPIPE do: not all of the
    output was delivered, which a script may want to know (a shell without `pipefail` reports
    the reader's exit code anyway)."""
    parser = _parser()
    # `launch` passes the flags it does not know on to its `run` workers.
    args, passed_on = parser.parse_known_args(argv)
    try:
        with _sigterm_as_exception():
            code = _command(parser, args, passed_on, hub)
        if sys.stdout is not None:  # None: started with stdout closed (`>&-`)
            sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
    except BrokenPipeError:
        silence_stdout()
        return ExitCode.FAILED
    except OSError as error:  # what no command expected: a full disk, a read-only folder
        return fail(error, ExitCode.FAILED, debug=args.debug)
    except (KeyboardInterrupt, Terminated) as stop:
        if args.debug:
            raise
        # What was finished is on disk (markers, journals; launch stopped its workers).
        how = "interrupted" if isinstance(stop, KeyboardInterrupt) else "stopped by SIGTERM"
        resumable = args.command in ("run", "launch", "judge-teacher")
        print(f"emopillars: {how}" + (f"; {RESUME_HINT}" if resumable else ""), file=sys.stderr)
        return ExitCode.INTERRUPTED if isinstance(stop, KeyboardInterrupt) else ExitCode.TERMINATED
    return code


class Terminated(BaseException):
    """SIGTERM arrived: raised where the command is, so that it unwinds as on Ctrl-C (an
    engine closed, `launch`'s workers stopped) instead of dying on the spot."""


@contextmanager
def _sigterm_as_exception() -> Iterator[None]:
    def terminate(signum: int, frame: FrameType | None) -> None:
        raise Terminated

    try:
        previous = signal.signal(signal.SIGTERM, terminate)
    except ValueError:  # not the main thread (main() called from a worker thread): as before
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _command(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    passed_on: list[str],
    hub: HubClient | None,
) -> int:
    debug: bool = args.debug
    if args.command == "launch":
        run_args = parser.parse_args(["run", *passed_on])  # a bad flag fails as in `run`
        overrides = _overrides(run_args)
        return launch_command(args.gpus, passed_on, run_args.config, overrides, debug=debug)
    if passed_on:
        parser.error(f"unrecognized arguments: {' '.join(passed_on)}")
    if args.command == "assemble":
        return assemble_command(args.run_dir, debug=debug, check=args.check)
    if args.command == "publish":
        return _publish(args, hub)
    if args.command == "train":
        return train_command(args)
    if args.command == "evaluate":
        return evaluate_command(args)
    if args.command == "judge-teacher":
        return judge_command(args)
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "report":
            return _report(args)
        if args.json:
            print(json.dumps(status_json(args.run_dir), indent=2))
        else:
            print(status_table(args.run_dir))
        return ExitCode.OK
    except (ConfigError, CorpusError, FileNotFoundError, RunFolderBusy) as error:
        return fail(error, ExitCode.USAGE, debug=debug)
    except (CorruptFileError, EmptyResultError) as error:  # says what to do: no resume hint
        return fail(error, ExitCode.FAILED, debug=debug)
    except (StorageError, RuntimeError) as error:
        return fail(error, ExitCode.FAILED, debug=debug, hint=RESUME_HINT)


if __name__ == "__main__":
    sys.exit(main())
