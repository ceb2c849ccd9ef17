"""What `status` and `assemble --check` say about a run folder's integrity: the chain from
the story shards to the last stage, and the assembled dataset against dataset/manifest.json.
Reads only: a finished folder on a read-only mount can be checked."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emopillars.dataset.dataset_manifest import verify_dataset
from emopillars.run.integrity import ChainReport, Problem, repair_hint, verify_chain
from emopillars.run.layout import RunLayout

# How far `status` lists problems; `--json` lists them all.
LISTED = 20


@dataclass(frozen=True)
class RunCheck:
    chain: ChainReport
    dataset: tuple[Problem, ...]  # the dataset folder against its manifest and the markers
    assembled: bool  # a dataset folder exists
    num_workers: int

    @property
    def problems(self) -> tuple[Problem, ...]:
        return self.chain.problems + self.dataset

    @property
    def dataset_state(self) -> str:
        """ "not assembled", "current" (matches its manifest and the markers) or "stale"."""
        if not self.assembled:
            return "not assembled"
        return "stale" if self.dataset else "current"


def check_run(run_dir: Path, plan: dict[str, Any]) -> RunCheck:
    layout = RunLayout(run_dir)
    assembled = layout.dataset.is_dir()
    return RunCheck(
        chain=verify_chain(layout, plan),
        dataset=tuple(verify_dataset(layout, plan["shards"])) if assembled else (),
        assembled=assembled,
        num_workers=plan.get("num_workers", 1),
    )


def check_lines(run_dir: Path, check: RunCheck) -> list[str]:
    """The integrity section of `status` and the report of `assemble --check`."""
    chain = check.chain
    if chain.intact:
        lines = [f"integrity: intact ({chain.verified} of {chain.total} stage shards verified)"]
    else:
        lines = [
            f"integrity: BROKEN, {_count(chain.problems)}; "
            + repair_hint(chain.problems, check.num_workers),
            *_listed(chain.problems),
        ]
    if check.dataset_state == "stale":
        lines += [
            f"dataset: {_count(check.dataset)} against dataset/manifest.json; run "
            f"`emopillars assemble {run_dir}` to build it again",
            *_listed(check.dataset),
        ]
    else:
        lines.append(f"dataset: {check.dataset_state}")
    return lines


def _count(problems: tuple[Problem, ...]) -> str:
    return f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"


def _listed(problems: tuple[Problem, ...]) -> list[str]:
    lines = [f"  {problem}" for problem in problems[:LISTED]]
    if len(problems) > LISTED:
        lines.append(f"  ... and {len(problems) - LISTED} more (status --json lists all)")
    return lines
