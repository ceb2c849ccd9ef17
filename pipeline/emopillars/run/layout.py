"""Every path of a run folder, in one place.

run.json                       what the run is: config, engine, prompt files (RunRecord)
plan.json                      the story shards every worker works from
stories/shard-00000.parquet    the corpus, as story shards; stories/rejects.parquet
<stage>/shard-00000.parquet    a stage's output rows for one story shard
<stage>/rejects-00000.parquet  what that stage rejected, with reasons
<stage>/answers-00000.parquet  every engine answer that made them (kept for re-parsing)
journal/<stage>/shard-00000.jsonl  answers of a shard still being computed
manifest/<stage>/shard-00000.json  the marker: written last, the proof a shard is done
logs/worker-0.log              `emopillars launch` worker logs
.lock                          the lock of the folder's one writer (run/lock.py); .lock.json: who
locks/join.lock                taken for a moment by a worker of several as it joins the run
locks/workers/<host>-<pid>-N.lock   held by each running worker of several (and a .json note)
locks/shards/shard-00000.lock  the lease of a story shard being computed (and a .json note)
dataset/                       the assembled dataset (dataset.partial/ while it is built)
dataset/manifest.json          the sha256 of every dataset file and the markers it came from
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

STORIES = "stories"


@dataclass(frozen=True)
class RunLayout:
    root: Path

    @property
    def run_record(self) -> Path:
        return self.root / "run.json"

    @property
    def plan(self) -> Path:
        return self.root / "plan.json"

    @property
    def corpus_rejects(self) -> Path:
        return self.root / STORIES / "rejects.parquet"

    def story_shard(self, shard: int) -> Path:
        return self.shard(STORIES, shard)

    def shard(self, stage: str, shard: int) -> Path:
        return self.root / stage / f"shard-{shard:05d}.parquet"

    def rejects(self, stage: str, shard: int) -> Path:
        return self.root / stage / f"rejects-{shard:05d}.parquet"

    def answers(self, stage: str, shard: int) -> Path:
        return self.root / stage / f"answers-{shard:05d}.parquet"

    def journal(self, stage: str, shard: int) -> Path:
        return self.root / "journal" / stage / f"shard-{shard:05d}.jsonl"

    @property
    def journals(self) -> Path:
        return self.root / "journal"

    def marker(self, stage: str, shard: int) -> Path:
        return self.root / "manifest" / stage / f"shard-{shard:05d}.json"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def worker_log(self, index: int) -> Path:
        return self.logs / f"worker-{index}.log"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    @property
    def join_lock(self) -> Path:
        return self.root / "locks" / "join.lock"

    @property
    def worker_locks(self) -> Path:
        return self.root / "locks" / "workers"

    def shard_lease(self, shard: int) -> Path:
        return self.root / "locks" / "shards" / f"shard-{shard:05d}.lock"

    @property
    def dataset(self) -> Path:
        return self.root / "dataset"

    @property
    def dataset_manifest(self) -> Path:
        """What the dataset was built from, and the sha256 of each of its files."""
        return self.dataset / "manifest.json"

    @property
    def dataset_staging(self) -> Path:
        return self.root / "dataset.partial"

    def relative(self, path: Path) -> str:
        return str(path.relative_to(self.root))
