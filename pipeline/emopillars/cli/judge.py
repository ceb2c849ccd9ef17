"""`emopillars judge-teacher`: how good the teacher is as an annotator, before a run.

Its engine flags are `run`'s, generated from RunConfig (cli/options.py), minus the fields that
only a corpus run uses: the same teacher is configured the same way in both commands.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from emopillars.classify.gold import GoldDataError, coverage_lines, read_target
from emopillars.classify.judge import JUDGE_FILE, JudgeResult, default_judge_dir, judge_teacher
from emopillars.cli.exit_codes import ExitCode
from emopillars.cli.failures import RESUME_HINT, check_output_folder, fail
from emopillars.cli.options import ConfigFlag, config_flags
from emopillars.cli.progress import ShardProgress
from emopillars.config import ConfigError, load_config
from emopillars.dataset.measured import Measurement, attach
from emopillars.engines import engine_spec
from emopillars.run.lock import RunFolderBusy
from emopillars.run.storage import StorageError

# The RunConfig fields (top-level names; a section brings all of its fields) that shape the
# judge's requests or how they are made. The output folder has a flag of its own.
JUDGE_FIELDS = frozenset(
    {
        "engine",
        "model",
        "context_window",
        "threads",
        "temperature",
        "repetition_penalty",
        "max_tokens",
        "seed",
        "vllm",
        "server",
        "prompt_version",
        "prompts_dir",
        "max_labels",
        "max_attempts",
        "retry_temperature",
        "fake_fault_rate",
        "fake_latency_s",
    }
)


def judge_flags() -> list[ConfigFlag]:
    return [flag for flag in config_flags() if flag.path[0] in JUDGE_FIELDS]


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text}")
    return value


def add_judge_command(commands: Any) -> None:
    """Add `judge-teacher` to the subcommands (`commands` is argparse's subparsers)."""
    judge = commands.add_parser(
        "judge-teacher",
        help="score the teacher's labels against human labels, per intensity threshold",
        description="Run the labelling call (without an intended emotion) on human-labelled "
        "sentences and report the teacher's macro-F1 at each intensity threshold 0.1-0.9, "
        "recommending one for label_threshold. Resumable: run it again to continue.",
    )
    judge.add_argument(
        "--gold",
        required=True,
        metavar="TARGET",
        help="goemotions[:train|validation|test] (from the Hub), or a GoEmotions TSV or a "
        "CSV/JSONL/Parquet file with text and labels columns",
    )
    judge.add_argument(
        "--label-map",
        type=Path,
        metavar="PATH",
        help="JSON {group: [GoEmotions labels]}: score in the groups' space (e.g. Ekman)",
    )
    judge.add_argument("--limit", type=_positive, metavar="N", help="judge the first N only")
    judge.add_argument(
        "--output",
        type=Path,
        metavar="DIR",
        help="judge folder (default outputs/judge-<target>-<hash of target and engine>)",
    )
    judge.add_argument("--json", action="store_true", help="print judge.json's object")
    judge.add_argument(
        "--attach",
        type=Path,
        metavar="RUN_DIR",
        help="keep the figures with this run: `emopillars report` and its card show them",
    )
    judge.add_argument(
        "--config",
        type=Path,
        help="a run's YAML config: judge the teacher it configures (flags override it)",
    )
    groups: dict[str, argparse._ArgumentGroup] = {}
    for flag in judge_flags():
        if flag.group not in groups:
            groups[flag.group] = judge.add_argument_group(flag.group)
        groups[flag.group].add_argument(flag.flag, dest=flag.dest, **flag.arguments)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for flag in judge_flags():
        value = getattr(args, flag.dest)
        if value is None:
            continue
        *sections, name = flag.path
        target = overrides
        for section in sections:
            target = target.setdefault(section, {})
        target[name] = value
    return overrides


def judge_command(args: argparse.Namespace) -> int:
    debug: bool = args.debug
    began = time.perf_counter()
    try:
        if args.attach is not None and not (args.attach / "run.json").is_file():
            # Found out now, not after hours of judging.
            raise FileNotFoundError(
                f"{args.attach} is not a run folder (no run.json): check --attach"
            )
        config = load_config(args.config, **_overrides(args))
        gold = read_target(args.gold, args.label_map).head(args.limit)
        spec = engine_spec(config)
        output: Path = args.output or default_judge_dir(args.gold, spec)
        check_output_folder(output)
        config = config.model_copy(update={"output": output})
        with ShardProgress() as progress:
            result = judge_teacher(config, gold, spec, progress, label_map=args.label_map)
    except (ConfigError, GoldDataError, FileNotFoundError, RunFolderBusy) as error:
        return fail(error, ExitCode.USAGE, debug=debug)
    except (StorageError, RuntimeError) as error:
        return fail(error, ExitCode.FAILED, debug=debug, hint=RESUME_HINT)
    if args.attach is not None:
        attach(args.attach, measurement(result.figures))
    if args.json:
        print(json.dumps(result.figures, indent=2, sort_keys=True))
    else:
        print(judge_table(result, time.perf_counter() - began))
    return ExitCode.OK


def measurement(figures: dict[str, Any]) -> Measurement:
    """The headline figures `report` and the card show: the best threshold's."""
    threshold = figures["recommended_threshold"]
    return Measurement(
        kind="judge-teacher",
        subject=f"{figures['engine']} ({figures['model']})",
        target=figures["target"],
        examples=figures["sentences"],
        macro_f1=figures["macro_f1"],
        micro_f1=figures["micro_f1"][f"{threshold:.1f}"],
        threshold=threshold,
    )


def judge_table(result: JudgeResult, wall: float) -> str:
    figures = result.figures
    recommended = f"{figures['recommended_threshold']:.1f}"
    reasons = ", ".join(f"{reason} {count}" for reason, count in figures["reject_reasons"].items())
    lines = [
        f"judge-teacher: {figures['sentences']} sentences of {figures['target']}, "
        f"{len(figures['labels'])} labels ({figures['labels_scored']} in the gold labels)",
        f"teacher: {figures['engine']} ({figures['model']}); {figures['rejected']} sentences "
        f"rejected{f' ({reasons})' if reasons else ''}, "
        f"{figures['unmapped_labels']} labels off the taxonomy in accepted answers",
        *coverage_lines(figures),
        "",
        "threshold  macro-F1  micro-F1",
    ]
    for key, macro in figures["thresholds"].items():
        mark = "  <- recommended" if key == recommended else ""
        lines.append(f"{key:>9}  {macro:8.4f}  {figures['micro_f1'][key]:8.4f}{mark}")
    lines += [
        "",
        f"recommended label_threshold: {recommended} (macro-F1 {figures['macro_f1']:.4f})",
        f"judge folder: {result.judge_dir} ({JUDGE_FILE})",
        f"this run: {result.shards_computed} judge shards computed, {result.shards_skipped} "
        f"already done; {result.requests_sent} requests sent; engine "
        f"{result.engine_seconds:.1f}s of {wall:.1f}s wall",
    ]
    if figures["engine"] == "fake":
        lines.append("NOTE: the fake engine was used: its labels are random, for tests only.")
    return "\n".join(lines)
