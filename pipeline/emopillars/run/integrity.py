"""The integrity chain of a run folder, from the story shards to the last stage.

Every marker records the sha256 of the input its shard was computed from, of its output and
of the rejects and answers beside it. The chain holds when the story shards hold exactly the
stories plan.json names, every file a marker names still has its recorded hash, each stage's
recorded input is the previous stage's recorded output (for the first stage: the story shard
as it is), and run.json, which the card is made from, is readable. `assemble` verifies the
chain before it writes anything, `status` shows where it is broken, and `run` recomputes
what is broken (see healing.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from emopillars.hashing import file_hash
from emopillars.messages import first_line
from emopillars.run.layout import STORIES, RunLayout
from emopillars.run.manifest import Manifest
from emopillars.run.plan import owner_of
from emopillars.run.record import read_run_record
from emopillars.run.storage import CorruptFileError
from emopillars.stages import STAGE_NAMES


@dataclass(frozen=True)
class Problem:
    """One break in the chain: a file, and what is wrong with it."""

    path: str  # relative to the run folder
    what: str  # e.g. "changed after it was marked done"
    stage: str  # the stage whose shard it concerns: "stories" for the story shards and plan
    shard: int | None = None  # None: the whole run (plan.json)

    def __str__(self) -> str:
        return f"{self.path} {self.what}"

    def as_json(self) -> dict[str, Any]:
        return {"path": self.path, "problem": self.what, "stage": self.stage, "shard": self.shard}


@dataclass(frozen=True)
class ChainReport:
    problems: tuple[Problem, ...]
    missing: tuple[tuple[str, int], ...]  # (stage, shard) with no marker yet: not done
    verified: int  # stage shards whose marker, files and input all hold
    total: int  # stage shards the plan calls for

    @property
    def intact(self) -> bool:
        return not self.problems


class BrokenChainError(RuntimeError):
    """Files of the run folder do not match what its markers recorded; nothing was written.
    The message names each and what to do."""

    def __init__(self, action: str, problems: tuple[Problem, ...], num_workers: int) -> None:
        self.problems = problems
        super().__init__(
            f"{action}: {len(problems)} problem{'s' if len(problems) > 1 else ''} in the "
            "integrity chain of the run folder:\n"
            + "\n".join(f"  - {problem}" for problem in problems[:40])
            + (f"\n  ... and {len(problems) - 40} more" if len(problems) > 40 else "")
            + "\n"
            + repair_hint(problems, num_workers)
        )


def repair_hint(problems: tuple[Problem, ...], num_workers: int) -> str:
    """What heals these problems: a run recomputes every shard that is broken."""
    todo = (
        "run the same `emopillars run` command again (same config): it rebuilds what is "
        "broken, reusing the answers already paid for, and keeps the rest"
    )
    if num_workers > 1:
        owners = sorted({owner_of(p.shard, num_workers) for p in problems if p.shard is not None})
        named = ", ".join(map(str, owners)) if owners else "any one"
        todo = f"run worker {named} (of {num_workers}) again: it rebuilds what is broken, "
        todo += "reusing the answers already paid for, and keeps the rest"
    return todo


def verify_chain(layout: RunLayout, plan: dict[str, Any]) -> ChainReport:
    """Check every link of the chain that the plan's shards call for. Reads only."""
    shards: int = plan["shards"]
    problems, story_hashes = _story_problems(layout, plan)
    problems = _record_problems(layout) + problems
    manifest = Manifest(layout)
    missing: list[tuple[str, int]] = []
    verified = 0
    # Per shard, the recorded output of the stage before (None: cannot be checked).
    upstream: dict[int, tuple[str | None, str]] = {
        shard: (story_hashes.get(shard), layout.relative(layout.story_shard(shard)))
        for shard in range(shards)
    }
    for stage in STAGE_NAMES:
        for shard in range(shards):
            expected, source = upstream[shard]
            upstream[shard] = (None, "")
            marker_path = layout.relative(layout.marker(stage, shard))
            try:
                marker = manifest.load(stage, shard)
            except CorruptFileError as error:
                problems.append(
                    Problem(marker_path, f"is unreadable ({error.problem})", stage, shard)
                )
                continue
            if marker is None:
                missing.append((stage, shard))
                continue
            found = [
                Problem(name, what, stage, shard) for name, what in manifest.damaged_files(marker)
            ]
            if not marker.input_sha256:
                found.append(
                    Problem(
                        marker_path,
                        "records no input hash (written by an older emopillars)",
                        stage,
                        shard,
                    )
                )
            elif expected is not None and marker.input_sha256 != expected:
                found.append(
                    Problem(
                        source,
                        f"is not the input {stage} shard {shard} was computed from "
                        f"({marker_path} records another sha256)",
                        stage,
                        shard,
                    )
                )
            problems += found
            verified += not found
            upstream[shard] = (marker.output_sha256, marker.output)
    return ChainReport(
        problems=tuple(problems),
        missing=tuple(missing),
        verified=verified,
        total=shards * len(STAGE_NAMES),
    )


def _record_problems(layout: RunLayout) -> list[Problem]:
    """run.json, which assembly reads for the card and provenance: missing or unreadable,
    the run cannot be assembled (a run rebuilds it)."""
    name = layout.relative(layout.run_record)
    try:
        read_run_record(layout)
    except FileNotFoundError:
        return [Problem(name, "is missing", STORIES)]
    except CorruptFileError as error:
        return [Problem(name, f"is unreadable ({error.problem})", STORIES)]
    except OSError as error:  # a folder in its place, say
        return [Problem(name, f"is unreadable ({error.strerror or error})", STORIES)]
    return []


def _story_problems(
    layout: RunLayout, plan: dict[str, Any]
) -> tuple[list[Problem], dict[int, str]]:
    """The story shards against the plan; and the hash of each readable story shard."""
    problems: list[Problem] = []
    hashes: dict[int, str] = {}
    found: list[str] = []
    complete = True
    for shard in range(plan["shards"]):
        path = layout.story_shard(shard)
        name = layout.relative(path)
        if not path.is_file():
            problems.append(Problem(name, "is missing", STORIES, shard))
            complete = False
            continue
        try:
            found += pq.read_table(path, columns=["story_id"]).column("story_id").to_pylist()
        except (pa.ArrowException, OSError, KeyError) as error:
            text = first_line(error)
            problems.append(Problem(name, f"is unreadable ({text})", STORIES, shard))
            complete = False
            continue
        hashes[shard] = file_hash(path)
    planned: list[str] = plan["story_ids"]
    if plan["stories"] != len(planned):
        what = f"counts {plan['stories']} stories but names {len(planned)}"
        problems.append(Problem(layout.relative(layout.plan), what, STORIES))
    if complete and found != planned:
        problems.append(
            Problem(
                layout.relative(layout.plan), _mismatch(planned, found, plan["shards"]), STORIES
            )
        )
    return problems, hashes


def _mismatch(planned: list[str], found: list[str], shards: int) -> str:
    text = (
        f"disagrees with the story shards: it names {len(planned)} stories in {shards} shards, "
        f"the shards hold {len(found)}"
    )
    for index, (a, b) in enumerate(zip(planned, found, strict=False)):
        if a != b:
            return f"{text}; the first difference is story {index}: {a!r} there, {b!r} in a shard"
    return text
