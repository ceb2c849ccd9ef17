"""The stage manifest: one marker file per (stage, shard), written after the shard's data.

A marker is the only proof that a shard is done. Markers are separate files so that workers
sharing one output folder never write the same file.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone

from pydantic import BaseModel, ConfigDict, Field, ValidationError, computed_field

from emopillars.config import describe
from emopillars.hashing import file_hash
from emopillars.run.layout import RunLayout
from emopillars.run.storage import CorruptFileError, read_json, row_count, write_json


class ShardMarker(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stage: str
    shard: int
    status: str = "done"
    fingerprint: str  # of everything that made the output: requests and parsing
    # Of what was sent alone: equal to the last one's when only parsing changed.
    request_fingerprint: str = ""
    output: str  # path relative to the run folder
    output_sha256: str
    # The links of the integrity chain: the input this shard was computed from (the story
    # shard, or the previous stage's output) and the files beside its output. Empty in
    # markers written before emopillars recorded them.
    input_sha256: str = ""
    rejects: str
    rejects_sha256: str = ""
    answers: str = ""  # the kept engine answers, relative to the run folder
    answers_sha256: str = ""
    inputs: int
    accepted: int
    rejected: int
    outputs: int
    item_rejects: int = 0
    reject_reasons: dict[str, int] = Field(default_factory=dict)
    requests_sent: int = 0
    requests_replayed: int = 0  # answered from the journal of an interrupted attempt
    answers_reparsed: int = 0  # answered from the kept answers of an earlier computation
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # Characters of the prompts sent, and of those equal to the previous prompt's start.
    prompt_chars: int = 0
    prompt_chars_shared: int = 0
    seconds: float = 0.0  # wall time of the shard
    engine_seconds: float = 0.0  # of which inside the engine
    engine: str = ""
    finished_at: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat())


class StageTotals(BaseModel):
    shards_done: int = 0
    shards_total: int = 0
    inputs: int = 0
    accepted: int = 0
    rejected: int = 0
    outputs: int = 0
    item_rejects: int = 0
    requests_sent: int = 0
    requests_replayed: int = 0
    answers_reparsed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt_chars: int = 0
    prompt_chars_shared: int = 0
    seconds: float = 0.0
    engine_seconds: float = 0.0
    reject_reasons: dict[str, int] = Field(default_factory=dict)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def tokens_per_second(self) -> float:
        """Completion tokens per engine second."""
        if not self.engine_seconds:
            return 0.0
        return round(self.completion_tokens / self.engine_seconds, 1)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def prefix_shared(self) -> float:
        """Fraction of prompt text equal to the previous request's start (prefix-cacheable)."""
        return round(self.prompt_chars_shared / self.prompt_chars, 3) if self.prompt_chars else 0.0


# The counters a stage's totals add up from its markers: every number both models share.
SUMMED = tuple(
    name
    for name, field in StageTotals.model_fields.items()
    if name in ShardMarker.model_fields and field.annotation in (int, float)
)


class Manifest:
    # What `outdated` says of a marker made with another fingerprint, as opposed to damage.
    CHANGED = "its inputs, prompts or parsing changed"

    def __init__(self, layout: RunLayout) -> None:
        self.layout = layout

    def load(self, stage: str, shard: int) -> ShardMarker | None:
        """The marker; None when there is none, CorruptFileError when it is unreadable."""
        path = self.layout.marker(stage, shard)
        if not path.exists():
            return None
        try:
            return ShardMarker.model_validate(read_json(path))
        except ValidationError as error:
            raise CorruptFileError(path, f"not a marker: {describe(error)}") from None

    def read(self, stage: str, shard: int) -> ShardMarker | None:
        """The marker of a done shard; None when there is none or it is unreadable: a marker
        that proves nothing counts as not done, and the shard is computed again."""
        try:
            return self.load(stage, shard)
        except CorruptFileError:
            return None

    def write(self, marker: ShardMarker) -> None:
        write_json(self.layout.marker(marker.stage, marker.shard), marker.model_dump())

    def is_current(self, marker: ShardMarker | None, fingerprint: str) -> bool:
        """Done with this exact fingerprint, and its files are the ones the marker names."""
        return marker is not None and self.outdated(marker, fingerprint) is None

    def outdated(self, marker: ShardMarker, fingerprint: str) -> str | None:
        """Why `marker` does not prove its shard done with this fingerprint; None when it does."""
        if marker.fingerprint != fingerprint:
            return self.CHANGED
        return next((f"{name} {what}" for name, what in self.damaged_files(marker)), None)

    def damaged_files(self, marker: ShardMarker) -> list[tuple[str, str]]:
        """(file, what is wrong) for each file of a marker that is missing or differs from its
        recorded hash, and for the marker when its counts disagree with those files; paths
        are relative to the run folder."""
        recorded = [
            (marker.output, marker.output_sha256),
            (marker.rejects, marker.rejects_sha256),
            (marker.answers, marker.answers_sha256),
        ]
        damaged = []
        for name, sha256 in recorded:
            if not name or not sha256:  # a marker older than the record of this file
                continue
            path = self.layout.root / name
            if not path.is_file():
                damaged.append((name, "is missing"))
            elif file_hash(path) != sha256:
                damaged.append((name, "changed after it was marked done"))
        return damaged or self.miscounted(marker)

    def miscounted(self, marker: ShardMarker) -> list[tuple[str, str]]:
        """The marker, when its counts disagree with its files or with each other: the
        counts go into status, quality.json and the card, so an edited count is damage."""
        wrong = []
        if marker.accepted + marker.rejected != marker.inputs:
            wrong.append(
                f"counts {marker.inputs} inputs but {marker.accepted} accepted and "
                f"{marker.rejected} rejected"
            )
        for name, counted, what in (
            (marker.output, marker.outputs, "outputs"),
            (marker.rejects, sum(marker.reject_reasons.values()), "rejects by reason"),
        ):
            path = self.layout.root / name
            if name and path.is_file() and (rows := row_count(path)) != counted:
                wrong.append(f"counts {counted} {what} but {name} holds {rows} rows")
        if marker.item_rejects > sum(marker.reject_reasons.values()):
            wrong.append(f"counts {marker.item_rejects} item rejects of fewer rejects")
        if not wrong:
            return []
        return [(self.layout.relative(self.layout.marker(marker.stage, marker.shard)),
                 "was edited: it " + "; ".join(wrong))]  # fmt: skip

    def totals(self, stages: tuple[str, ...], shards: int) -> dict[str, StageTotals]:
        totals: dict[str, StageTotals] = {}
        for stage in stages:
            total = StageTotals(shards_total=shards)
            reasons: Counter[str] = Counter()
            for shard in range(shards):
                marker = self.read(stage, shard)
                if marker is None:
                    continue
                total.shards_done += 1
                for name in SUMMED:
                    setattr(total, name, getattr(total, name) + getattr(marker, name))
                reasons.update(marker.reject_reasons)
            total.seconds = round(total.seconds, 3)
            total.engine_seconds = round(total.engine_seconds, 3)
            total.reject_reasons = dict(sorted(reasons.items()))
            totals[stage] = total
        return totals
