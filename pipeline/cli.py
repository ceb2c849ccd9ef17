"""The `emopillars` command: parse flags, build a config, make one library call, exit."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from pipeline.api import run_pipeline
from pipeline.config import ConfigError, load_config
from pipeline.corpus import CorpusError
from pipeline.status import status_json, status_table
from pipeline.storage import StorageError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emopillars", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the pipeline (resumes an interrupted run)")
    run.add_argument("--config", type=Path, help="YAML file with run settings; flags override it")
    run.add_argument("--corpus", type=Path, help="stories: .jsonl, .csv, .parquet or a .txt folder")
    run.add_argument("--corpus-format", choices=["auto", "jsonl", "csv", "parquet", "txt"])
    run.add_argument("--id-field")
    run.add_argument("--title-field")
    run.add_argument("--text-field")
    run.add_argument("--output", type=Path, help="run folder (default outputs/<run-name>)")
    run.add_argument("--run-name")
    run.add_argument("--engine", choices=["llamacpp", "fake"])
    run.add_argument("--model", help="GGUF file for llamacpp (default: packaged SmolLM2-135M)")
    run.add_argument("--max-stories", type=int)
    run.add_argument("--max-actors", type=int, help="characters per story")
    run.add_argument("--shard-size", type=int, help="stories per shard")
    run.add_argument("--seed", type=int)
    run.add_argument("--threads", type=int, help="CPU threads for llamacpp (default: all)")
    run.add_argument("--license", help="dataset license id written in the card")
    run.add_argument("--quiet", action="store_true", help="no per-shard progress lines")

    status = commands.add_parser("status", help="show per-stage progress of a run folder")
    status.add_argument("run_dir", type=Path)
    status.add_argument("--json", action="store_true")
    return parser


def _run(args: argparse.Namespace) -> int:
    overrides = {
        key: getattr(args, key)
        for key in (
            "corpus",
            "corpus_format",
            "id_field",
            "title_field",
            "text_field",
            "output",
            "run_name",
            "engine",
            "model",
            "max_stories",
            "max_actors",
            "shard_size",
            "seed",
            "threads",
            "license",
        )
    }
    config = load_config(args.config, **overrides)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
    )
    began = time.perf_counter()
    result = run_pipeline(config)
    print(status_table(result.run_dir))
    print()
    for name, splits in result.dataset_counts.items():
        print(f"dataset {name}: " + ", ".join(f"{s} {n}" for s, n in splits.items()))
    wall = time.perf_counter() - began
    print(f"dataset folder: {result.run_dir / 'dataset'}")
    print(f"engine: {result.engine}")
    print(
        f"this run: {result.shards_computed} stage shards computed, {result.shards_skipped} "
        f"already done; {result.requests_sent} requests sent; "
        f"engine {result.engine_seconds:.1f}s of {wall:.1f}s wall"
    )
    if result.engine.startswith("fake"):
        print("NOTE: the fake engine was used: texts and labels are random, for tests only.")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            return _run(args)
        if args.json:
            print(json.dumps(status_json(args.run_dir), indent=2))
        else:
            print(status_table(args.run_dir))
        return EXIT_OK
    except (ConfigError, CorpusError, FileNotFoundError) as error:
        print(f"emopillars: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (StorageError, RuntimeError) as error:
        print(f"emopillars: {error}", file=sys.stderr)
        print("finished shards are kept; run the same command again to resume", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
