from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from emopillars.config import RunConfig

STORIES = [
    ("s1", "The Lighthouse", "Mara keeps the lighthouse with her brother Tomas. When a storm "
     "wrecks a fishing boat, Mara rows out alone and saves the captain, Ines, who later "
     "reveals that Tomas sold the lamp's spare parts."),
    ("s2", "Market Day", "Old Pell sells bread in the market. His rival Dora spreads a rumour "
     "that his flour is spoiled, and the mayor, Quill, has to taste both breads in public."),
    ("s3", "The Letter", "After ten years, Jonah receives a letter from his sister Ada, who "
     "left the village after their father's funeral. She asks to come home for the winter."),
    ("s4", "Night Train", "A conductor, Ruth, finds a boy, Eli, hiding in the mail car. Eli "
     "says he is running to his grandmother; Ruth must decide whether to report him."),
    ("s5", "The Match", "Coach Bram benches his star player, Lena, before the final. The team "
     "wins without her, and Lena learns that Bram did it to protect her injured knee."),
    ("s6", "The Garden", "Widow Sela plants her late husband's seeds. Her neighbour Otto mocks "
     "her until the garden feeds the whole street through a hard summer."),
]  # fmt: skip


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # No test may reach the network or read a user's token or caches.
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    # Nor write into the user's caches (the model-hash cache lives there).
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    # Nor join a Ray cluster, report Ray usage, or take a worker identity from a scheduler.
    for name in ("RAY_ADDRESS", "JOB_COMPLETION_INDEX", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.delenv(name, raising=False)
    for name in [name for name in os.environ if name.startswith("SLURM_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")


def write_corpus(path: Path, stories: list[tuple[str, str, str]] | None = None) -> Path:
    rows = stories if stories is not None else STORIES
    with path.open("w", encoding="utf-8") as handle:
        for story_id, title, text in rows:
            handle.write(json.dumps({"id": story_id, "title": title, "text": text}) + "\n")
    return path


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "stories.jsonl")


def fake_config(corpus: Path, output: Path, **overrides: Any) -> RunConfig:
    values: dict[str, Any] = {
        "corpus": corpus,
        "output": output,
        "engine": "fake",
        "shard_size": 2,
        "max_actors": 2,
    }
    values.update(overrides)
    return RunConfig.model_validate(values)


def dataset_contents(run_dir: Path) -> dict[str, object]:
    """Every file of a run's dataset: the rows of each Parquet file, the bytes of each figure,
    the text of the others (the card, quality.json)."""
    folder = run_dir / "dataset"
    contents: dict[str, object] = {}
    for path in sorted(folder.rglob("*")):
        name = str(path.relative_to(folder))
        if path.suffix == ".parquet":
            contents[name] = pq.read_table(path).to_pylist()
        elif path.suffix == ".png":
            contents[name] = path.read_bytes()
        elif path.is_file():
            contents[name] = path.read_text(encoding="utf-8")
    return contents


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished fake-engine run (6 stories, 3 story shards) for the whole session: tests
    that change a run work on a copy (`run_dir`)."""
    from emopillars.api import run_pipeline

    folder = tmp_path_factory.mktemp("finished")
    run_pipeline(fake_config(write_corpus(folder / "stories.jsonl"), folder / "run"))
    return folder / "run"


@pytest.fixture
def run_dir(finished_run: Path, tmp_path: Path) -> Path:
    """A copy of the finished run, this test's own."""
    return Path(shutil.copytree(finished_run, tmp_path / "run"))
