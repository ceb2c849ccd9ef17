"""dataset/manifest.json: what an assembled dataset holds and what it was built from.

Assembly records the sha256 of every file it writes into the dataset folder, and the
fingerprint and output hash of every stage marker it read. Publishing checks both before
anything leaves the machine: a dataset file edited, deleted or added since assembly, or a
stage shard recomputed since (the dataset is then stale), is refused, naming the file.
The file holds no timestamp: the same shards give the same manifest.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from emopillars.hashing import file_hash
from emopillars.run.integrity import Problem
from emopillars.run.layout import RunLayout
from emopillars.run.manifest import Manifest
from emopillars.run.storage import CorruptFileError, read_json
from emopillars.stages import STAGE_NAMES

FORMAT = 1
MARKER_KEY = re.compile(r"(?P<stage>[a-z_]+)/shard-(?P<shard>\d{5,})")
DATASET = "dataset"  # the `stage` of a Problem of the dataset folder


def built_from(layout: RunLayout, shards: int) -> dict[str, dict[str, str]]:
    """The markers a dataset is built from, as `stage/shard-NNNNN` -> what they vouch for.
    Markers that are missing or unreadable are left out (they show as stale)."""
    manifest = Manifest(layout)
    markers: dict[str, dict[str, str]] = {}
    for stage in STAGE_NAMES:
        for shard in range(shards):
            marker = manifest.read(stage, shard)
            if marker is not None:
                markers[f"{stage}/shard-{shard:05d}"] = {
                    "fingerprint": marker.fingerprint,
                    "output_sha256": marker.output_sha256,
                }
    return markers


def write_dataset_manifest(layout: RunLayout, folder: Path, shards: int) -> None:
    """Record the files of `folder` (the dataset being assembled) and the markers of the run;
    written last into the folder, which is then renamed into place."""
    files = {
        path.relative_to(folder).as_posix(): file_hash(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }
    value = {"format": FORMAT, "files": files, "built_from": built_from(layout, shards)}
    # A plain write: the whole folder is renamed into place after it, or not at all.
    (folder / layout.dataset_manifest.name).write_text(
        json.dumps(value, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )


def verify_dataset(layout: RunLayout, shards: int) -> list[Problem]:
    """The dataset folder against its manifest, and the manifest against the markers now.
    Reads only."""
    path = layout.dataset_manifest
    name = layout.relative(path)
    if not path.is_file():
        what = "is missing (the dataset was assembled by an older emopillars, or it was removed)"
        return [Problem(name, what, DATASET)]
    try:
        recorded = read_json(path)
    except CorruptFileError as error:
        return [Problem(name, f"is unreadable ({error.problem})", DATASET)]
    if not _is_manifest(recorded):
        return [Problem(name, "is not a dataset manifest of this emopillars version", DATASET)]
    files: dict[str, str] = recorded["files"]
    markers: dict[str, dict[str, str]] = recorded["built_from"]
    return _file_problems(layout, files) + _stale_problems(layout, markers, shards)


def _is_manifest(value: Any) -> bool:
    if not isinstance(value, dict) or value.get("format") != FORMAT:
        return False
    files, markers = value.get("files"), value.get("built_from")
    return (
        isinstance(files, dict)
        and all(isinstance(sha, str) for sha in files.values())
        and isinstance(markers, dict)
        and all(MARKER_KEY.fullmatch(key) and isinstance(v, dict) for key, v in markers.items())
    )


def _file_problems(layout: RunLayout, files: dict[str, str]) -> list[Problem]:
    folder = layout.dataset
    problems: list[Problem] = []
    for relative, sha256 in sorted(files.items()):
        path = folder / relative
        name = layout.relative(path)
        if not path.is_file():
            problems.append(Problem(name, "was deleted after assembly", DATASET))
        elif file_hash(path) != sha256:
            problems.append(Problem(name, "was edited after assembly", DATASET))
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if path.is_file() and path != layout.dataset_manifest and relative not in files:
            problems.append(Problem(layout.relative(path), "was added after assembly", DATASET))
    return problems


def _stale_problems(
    layout: RunLayout, recorded: dict[str, dict[str, str]], shards: int
) -> list[Problem]:
    now = built_from(layout, shards)
    problems: list[Problem] = []
    for key in sorted(set(now) | set(recorded)):
        match = MARKER_KEY.fullmatch(key)
        assert match is not None  # keys of `now` are made so, of `recorded` checked so
        stage, shard = match["stage"], int(match["shard"])
        marker = layout.relative(layout.marker(stage, shard))
        if key not in now:
            what = "is missing or unreadable now: the dataset was built from it"
            if shard >= shards:
                what = "is no longer part of the plan: the dataset was built from it"
        elif key not in recorded:
            what = "is newer than the dataset: the dataset is stale"
        elif now[key] != recorded[key]:
            what = "changed after the dataset was assembled: the dataset is stale"
        else:
            continue
        problems.append(Problem(marker, what, stage, shard))
    return problems
