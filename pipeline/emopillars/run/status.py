"""What a run folder holds: per-stage progress from the markers, as a table or as JSON."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from emopillars.run.check import check_lines, check_run
from emopillars.run.layout import RunLayout
from emopillars.run.lock import writers
from emopillars.run.lockfile import Holder, describe
from emopillars.run.manifest import Manifest, StageTotals
from emopillars.run.plan import read_plan
from emopillars.stages import STAGE_NAMES

# requests: answers from the engine, this time or in an interrupted attempt; reparsed: answers
# kept from an earlier computation of the shard, parsed again without asking the engine.
COLUMNS = ("shards", "inputs", "accepted", "rejected", "outputs", "requests", "reparsed",
           "prompt_tok", "compl_tok", "wall_s", "engine_s", "tok/s", "prefix")  # fmt: skip


def stage_totals(run_dir: Path) -> dict[str, StageTotals]:
    plan = read_plan(RunLayout(run_dir))
    return Manifest(RunLayout(run_dir)).totals(STAGE_NAMES, plan["shards"])


def status_json(run_dir: Path) -> dict[str, Any]:
    plan = read_plan(RunLayout(run_dir))
    checked = check_run(run_dir, plan)
    return {
        "run_dir": str(run_dir),
        "stories": plan["stories"],
        "corpus_rejects": plan["corpus_rejects"],
        "stages": {name: total.model_dump() for name, total in stage_totals(run_dir).items()},
        "integrity": {
            "intact": checked.chain.intact,
            "verified": checked.chain.verified,
            "total": checked.chain.total,
            "dataset": checked.dataset_state,
        },
        "problems": [problem.as_json() for problem in checked.problems],
        # Who writes the folder now: [] nobody, null cannot be told from here; an entry is
        # null for a holder that has not written its name yet.
        "writers": _writers_json(writers(run_dir)),
    }


def _writers_json(found: list[Holder | None] | None) -> list[dict[str, Any] | None] | None:
    if found is None:
        return None
    return [None if holder is None else asdict(holder) for holder in found]


def writers_line(found: list[Holder | None] | None) -> str:
    """Who writes the folder now, in one line."""
    if found is None:
        return "writing now: cannot tell (no lock can be taken from here, or workers are joining)"
    if not found:
        return "writing now: nobody"
    if len(found) == 1:
        return f"writing now: {describe(found[0])}"
    return f"writing now: {len(found)} workers: " + "; ".join(describe(h) for h in found)


def status_table(run_dir: Path) -> str:
    totals = stage_totals(run_dir)
    plan = read_plan(RunLayout(run_dir))
    header = f"{'stage':<11}" + "".join(f"{column:>11}" for column in COLUMNS)
    lines = [header, "-" * len(header)]
    for name, t in totals.items():
        cells = (f"{t.shards_done}/{t.shards_total}", t.inputs, t.accepted, t.rejected,
                 t.outputs, t.requests_sent + t.requests_replayed, t.answers_reparsed,
                 t.prompt_tokens,
                 t.completion_tokens, f"{t.seconds:.1f}", f"{t.engine_seconds:.1f}",
                 t.tokens_per_second, f"{t.prefix_shared:.0%}")  # fmt: skip
        lines.append(f"{name:<11}" + "".join(f"{cell!s:>11}" for cell in cells))
    corpus = ", ".join(f"{k} {v}" for k, v in plan["corpus_rejects"].items()) or "none"
    lines += ["", f"stories: {plan['stories']} (corpus rejects: {corpus})",
              writers_line(writers(run_dir)), "rejects by reason:"]  # fmt: skip
    for name, t in totals.items():
        reasons = ", ".join(f"{reason} {n}" for reason, n in t.reject_reasons.items()) or "none"
        lines.append(f"  {name:<11}{reasons}")
    lines += ["", *check_lines(run_dir, check_run(run_dir, plan))]
    return "\n".join(lines)
