"""`emopillars train` and `emopillars evaluate`: the classifiers that measure a run's data."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any, get_args

from pydantic import ValidationError

from emopillars.classify.examples import (
    CONFIG_NAMES,
    DatasetChangedError,
    DatasetMissingError,
    Targets,
)
from emopillars.classify.gold import GoldDataError
from emopillars.cli.exit_codes import ExitCode
from emopillars.cli.failures import fail
from emopillars.config import describe
from emopillars.dataset.measured import attach, from_evaluation
from emopillars.run.storage import CorruptFileError


def add_classify_commands(commands: Any) -> None:
    """Add `train` and `evaluate` to the subcommands (`commands` is argparse's subparsers)."""
    train = commands.add_parser(
        "train",
        help="fine-tune an encoder classifier on a run's dataset (the train extra)",
        description="Fine-tune a multi-label classifier (one sigmoid per label) on a finished "
        "run's dataset, the paper's way; thresholds are calibrated on the validation split. "
        "A killed training resumes from its last epoch. Needs pip install 'emopillars[train]'.",
    )
    train.add_argument("run_dir", type=Path)
    train.add_argument("--config", required=True, choices=CONFIG_NAMES, dest="dataset_config")
    train.add_argument("--output", type=Path, help="MODEL_DIR (default: RUN_DIR/models/CONFIG)")
    train.add_argument(
        "--base-model",
        default="roberta-base",
        help="an encoder's Hub id or folder (default: roberta-base)",
    )
    train.add_argument(
        "--targets",
        choices=get_args(Targets),
        default="labels",
        help="labels: the kept labels as 0/1 (default); soft: their intensities",
    )
    train.add_argument("--epochs", type=int, default=10)
    train.add_argument("--batch-size", type=int, help="default: 64 context-less, 32 context-aware")
    train.add_argument("--learning-rate", type=float, default=2e-5)
    train.add_argument(
        "--max-length", type=int, help="tokens (default: 128 context-less, 512 context-aware)"
    )
    train.add_argument(
        "--patience",
        type=int,
        default=3,
        help="stop after this many epochs without a better validation macro-F1 (default 3)",
    )
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default="auto", help="auto (a GPU when present), cpu, cuda")
    train.add_argument("--quiet", action="store_true", help="no progress bar")

    evaluate = commands.add_parser(
        "evaluate",
        help="score a trained classifier on human-labelled or synthetic test data",
        description="Macro- and micro-F1 and per-label scores of a classifier trained by "
        "`emopillars train`, at its calibrated threshold and across a threshold sweep.",
    )
    evaluate.add_argument("model_dir", type=Path)
    evaluate.add_argument(
        "--on",
        required=True,
        dest="target",
        help="goemotions[:split] (from the Hub), a labelled .tsv/.csv/.jsonl/.parquet file, "
        "or synthetic:RUN_DIR (the run's test split, with the paper's comparisons)",
    )
    evaluate.add_argument(
        "--label-map",
        type=Path,
        help="JSON {group: [GoEmotions labels]} to score in a coarser label set (e.g. Ekman)",
    )
    evaluate.add_argument(
        "--compare",
        type=Path,
        metavar="MODEL_DIR",
        help="with synthetic: and a context-aware model, a context-less one scored beside it",
    )
    evaluate.add_argument("--device", default="auto")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.add_argument(
        "--attach",
        type=Path,
        metavar="RUN_DIR",
        help="keep the scores with this run: `emopillars report` and its card show them",
    )


def train_command(args: argparse.Namespace) -> int:
    from emopillars.classify.model import (
        DeviceError,
        TrainExtraMissing,
        quiet_transformers,
        require_train_extra,
    )
    from emopillars.classify.train import TrainingError, TrainSettings, train

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    try:
        settings = TrainSettings(
            config=args.dataset_config,
            base_model=args.base_model,
            targets=args.targets,
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            max_length=args.max_length,
            patience=args.patience,
            seed=args.seed,
        )
    except ValidationError as error:
        return fail(ValueError(describe(error)), ExitCode.USAGE, debug=args.debug)
    model_dir: Path = args.output or args.run_dir / "models" / args.dataset_config
    try:
        require_train_extra()
        quiet_transformers()
        result = train(args.run_dir, model_dir, settings, args.device, progress=not args.quiet)
    except (TrainExtraMissing, DatasetMissingError, TrainingError, DeviceError) as error:
        return fail(error, ExitCode.USAGE, debug=args.debug)
    except (CorruptFileError, DatasetChangedError) as error:  # names the file and what to do
        return fail(error, ExitCode.FAILED, debug=args.debug)
    history = result.history
    best = history.best
    assert best is not None
    stop = "stopped early" if history.stopped_early else "finished"
    print(
        f"trained {settings.config} on {args.run_dir} ({stop} after "
        f"{history.epochs[-1].epoch} epochs; best epoch {best.epoch}: validation macro-F1 "
        f"{best.validation_macro_f1:.4f} at threshold {best.threshold:.2f})"
    )
    print(f"model folder: {model_dir} (figures: training.json, training.png)")
    print(f"evaluate it with: emopillars evaluate {model_dir} --on synthetic:{args.run_dir}")
    return ExitCode.OK


def evaluate_command(args: argparse.Namespace) -> int:
    from emopillars.classify.evaluate import EvaluationError, evaluate, evaluation_table
    from emopillars.classify.model import (
        DeviceError,
        TrainExtraMissing,
        quiet_transformers,
        require_train_extra,
    )

    try:
        require_train_extra()
        quiet_transformers()
        report = evaluate(args.model_dir, args.target, args.label_map, args.compare, args.device)
    except (
        TrainExtraMissing,
        GoldDataError,
        EvaluationError,
        DatasetMissingError,
        DeviceError,
    ) as error:
        return fail(error, ExitCode.USAGE, debug=args.debug)
    except FileNotFoundError as error:
        return fail(error, ExitCode.USAGE, debug=args.debug)
    except DatasetChangedError as error:
        return fail(error, ExitCode.FAILED, debug=args.debug)
    if args.attach is not None:
        try:
            attach(args.attach, from_evaluation(report))
        except FileNotFoundError as error:
            return fail(error, ExitCode.USAGE, debug=args.debug)
    print(json.dumps(report, indent=2) if args.json else evaluation_table(report))
    return ExitCode.OK
