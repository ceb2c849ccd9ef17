"""Whether a finished stage shard still counts as done, and what to say when it does not.

A marker proves a shard done only while it is readable and every file it names still has the
hash it recorded. A marker that is torn or invalid, or whose output was truncated or edited,
counts as not done: the shard is computed again, from its kept answers where they can be read,
so healing costs no engine request that was already paid for.
"""

from __future__ import annotations

import logging

import pyarrow as pa

from emopillars.engines import Result
from emopillars.hashing import file_hash
from emopillars.messages import first_line
from emopillars.run.answers import read_answers
from emopillars.run.layout import RunLayout
from emopillars.run.manifest import Manifest, ShardMarker
from emopillars.run.storage import CorruptFileError

log = logging.getLogger("emopillars")


def previous_marker(manifest: Manifest, stage: str, shard: int) -> ShardMarker | None:
    """The shard's marker; None, with a log line, when it is unreadable."""
    try:
        return manifest.load(stage, shard)
    except CorruptFileError as error:
        where = manifest.layout.relative(error.path)
        log.warning(
            "%s shard %d: recomputing it: its marker %s is unreadable (%s)",
            stage,
            shard,
            where,
            error.problem,
        )
        return None


def kept_answers(layout: RunLayout, stage: str, shard: int) -> dict[str, Result]:
    """The answers kept from the shard's last computation; none, with a log line, when their
    file is unreadable (the requests then go to the engine again)."""
    path = layout.answers(stage, shard)
    try:
        return read_answers(path)
    except (pa.ArrowException, OSError, KeyError) as error:  # KeyError: a column is missing
        if isinstance(error, FileNotFoundError):
            return {}
        log.warning(
            "%s shard %d: its kept answers %s are unreadable (%s): their requests go to the "
            "engine again",
            stage,
            shard,
            layout.relative(path),
            first_line(error),
        )
        return {}


def record_links(manifest: Manifest, marker: ShardMarker, input_sha256: str) -> None:
    """Give a current marker written before the integrity chain was recorded its input and
    file hashes. Called only when the marker is current: its fingerprint covers the input's
    hash and its output matches, so what is there now is what it was computed from."""
    if marker.input_sha256 and marker.rejects_sha256 and marker.answers_sha256:
        return
    root = manifest.layout.root

    def sha(name: str) -> str:
        path = root / name
        return file_hash(path) if name and path.is_file() else ""

    manifest.write(
        marker.model_copy(
            update={
                "input_sha256": input_sha256,
                "rejects_sha256": marker.rejects_sha256 or sha(marker.rejects),
                "answers_sha256": marker.answers_sha256 or sha(marker.answers),
            }
        )
    )


def explain_recompute(
    stage: str,
    shard: int,
    previous: ShardMarker | None,
    reason: str | None,
    same_requests: bool,
    kept: dict[str, Result],
) -> None:
    """Say why a finished shard is computed again, and whether the engine will be asked.

    `reason` is what `Manifest.outdated` said; `same_requests` whether the first-attempt
    requests are those the kept answers answered."""
    if previous is None or reason is None:
        return
    where = f"{stage} shard {shard}"
    damaged = reason != Manifest.CHANGED
    if damaged:
        log.warning("%s: recomputing it: %s", where, reason)
    if not kept:
        log.info(
            "%s: recomputing; it has no kept answers (made before emopillars kept them, or "
            "its answers file was removed), so its requests go to the engine again",
            where,
        )
    elif damaged:
        log.info("%s: its kept answers are parsed again; the engine is not asked", where)
    elif same_requests:
        log.info("%s: only parsing changed; re-parsing its kept answers", where)
    else:
        log.info("%s: inputs or prompts changed; kept answers are reused where they match", where)
