"""The quality report in words: the `emopillars report` table, the summary that ends
`emopillars run`, and the "Quality" section of the dataset card."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from emopillars.dataset.figures import FIGURES, figure_path
from emopillars.dataset.quality import ConfigQuality, ContextAwareQuality, QualityReport
from emopillars.stages import STAGE_NAMES
from emopillars.stages.taxonomy import LABELS

Cell = Callable[[ConfigQuality], str]
# assemble.SPLITS: assemble renders the card, so the card's modules cannot import it.
SPLITS = ("train", "validation", "test")


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def number(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _aware(read: Callable[[ContextAwareQuality], str]) -> Cell:
    """A cell only the context_aware config has."""
    return lambda config: read(config) if isinstance(config, ContextAwareQuality) else "-"


def _context_words(config: ContextAwareQuality) -> str:
    spread = config.context_words
    if spread is None:
        return "-"
    return f"{spread.median:g} ({spread.p10:g}-{spread.p90:g})"


def _paper(report: QualityReport, key: str, as_percent: bool = False) -> str:
    value = report.paper.get(key)
    if value is None:
        return ""
    return f"{value:.0%}" if as_percent else f"{value:.2f}"


@dataclass(frozen=True)
class Line:
    what: str
    cell: Cell
    paper: str = ""  # the paper's figure, when it reports one
    short: bool = False  # in the summary that ends `emopillars run`


def _lines(report: QualityReport) -> list[Line]:
    """The lines of the tables, in order."""
    return [
        Line("rows", lambda c: str(c.rows), short=True),
        Line("rows per story", lambda c: number(c.rows_per_story)),
        Line("labels per example", lambda c: number(c.labels_per_example),
             _paper(report, "labels_per_example"), short=True),
        Line("examples with neutral", lambda c: percent(c.neutral_share),
             _paper(report, "neutral_share", as_percent=True), short=True),
        Line("intended emotion among labels", lambda c: percent(c.intended_in_labels),
             short=True),
        Line("distinct-1 / distinct-2",
             lambda c: f"{number(c.distinct_1)} / {number(c.distinct_2)}"),
        Line("exact / near duplicates", lambda c: f"{c.exact_duplicates} / {c.near_duplicates}"),
        Line("similarity within an actor", lambda c: number(c.within_actor_similarity),
             _paper(report, "within_actor_similarity"), short=True),
        Line("similarity across actors", lambda c: number(c.cross_actor_similarity),
             _paper(report, "cross_actor_similarity"), short=True),
        Line("context words: median (p10-p90)", _aware(_context_words)),
        Line("contexts with an emotion word",
             _aware(lambda c: percent(c.context_emotion_word_share))),
        Line("emotion words before / after rewrite",
             _aware(lambda c: f"{percent(c.original_emotion_word_share)} / "
                              f"{percent(c.rewrite_emotion_word_share)}")),
        Line("rewrite / original length (median)",
             _aware(lambda c: number(c.rewrite_length_ratio_median))),
        Line("rewrite similarity to original", _aware(lambda c: number(c.rewrite_similarity))),
    ]  # fmt: skip


def _table(report: QualityReport, lines: list[Line]) -> list[str]:
    configs = _configs(report)
    header = f"{'':<38}" + "".join(f"{name:>16}" for name in configs) + f"{'paper':>9}"
    rows = [header, "-" * len(header)]
    for line in lines:
        cells = "".join(f"{line.cell(c) if c else '-':>16}" for c in configs.values())
        rows.append(f"{line.what:<38}{cells}{line.paper:>9}".rstrip())
    return rows


def _in_order(keys: Iterable[str], order: Sequence[str]) -> list[str]:
    """Keys in the pipeline's order (quality.json stores them sorted), others after."""
    return sorted(keys, key=lambda key: (order.index(key) if key in order else len(order), key))


def _configs(report: QualityReport) -> dict[str, ConfigQuality | None]:
    return {
        "context_less": report.configs.context_less,
        "context_aware": report.configs.context_aware,
    }


def _methods(report: QualityReport) -> str:
    found = {c.similarity_method for c in _configs(report).values() if c is not None}
    return ", ".join(sorted(found)) or "-"


def quality_table(report: QualityReport, run_dir: Path) -> str:
    """What `emopillars report DIR` prints."""
    configs = _configs(report)
    source = (
        "the assembled dataset"
        if report.source == "dataset"
        else "the finished stage shards, not an assembled dataset"
    )
    lines = [f"quality of {run_dir}, measured on {source}", ""]
    lines += _table(report, _lines(report))
    lines += ["", f"similarity: {_methods(report)}", ""]
    lines.append("per split: rows, labels per example, with neutral, intended among labels")
    for name, config in configs.items():
        splits = config.splits if config else {}
        for split in _in_order(splits, SPLITS):
            part = splits[split]
            lines.append(
                f"  {name:<14}{split:<11}{part.rows:>7}  {number(part.labels_per_example):>5}"
                f"  {percent(part.neutral_share):>6}  {percent(part.intended_in_labels):>6}"
            )
    lines += ["", "labels, share of examples: " + ", ".join(f"{n} labelled" for n in configs)
              + ", asked for (context_less)"]  # fmt: skip
    less = report.configs.context_less
    for label in LABELS:
        shares = [percent(c.label_distribution[label]) if c else "-" for c in configs.values()]
        asked = percent(less.intended_distribution[label]) if less else "-"
        lines.append(f"  {label:<15}" + "".join(f"{s:>9}" for s in [*shares, asked]))
    lines += ["", f"  {'stage':<11}{'inputs':>8}{'accepted':>9}{'rejected':>9}{'rej.items':>10}  "
              "reject reasons (answers and items)"]  # fmt: skip
    for stage in _in_order(report.stages, STAGE_NAMES):
        total = report.stages[stage]
        reasons = ", ".join(f"{r} {n}" for r, n in total.reject_reasons.items()) or "none"
        lines.append(
            f"  {stage:<11}{total.inputs:>8}{total.accepted:>9}{total.rejected:>9}"
            f"{total.item_rejects:>10}  {reasons}"
        )
    if report.figures:
        lines += ["", "figures: " + ", ".join(f"dataset/{path}" for path in report.figures)]
    if report.missing:
        lines += ["", "not measured yet:", *(f"  - {part}" for part in report.missing)]
    return "\n".join(lines)


def quality_summary(report: QualityReport, run_dir: Path) -> str:
    """The few numbers that end `emopillars run`."""
    lines = ["", "quality of the dataset:"]
    lines += _table(report, [line for line in _lines(report) if line.short])
    lines.append(f"similarity: {_methods(report)}; all of it: emopillars report {run_dir}")
    return "\n".join(lines)


def card_section(report: QualityReport) -> list[str]:
    """The card's "Quality" section: the numbers, then the figures it links."""
    configs = _configs(report)
    lines = [
        "## Quality",
        "",
        "Measured on the files of this dataset (every number is in [quality.json](quality.json));",
        "the paper's figures are those of the Emo Pillars dataset.",
        "",
        "| measure | " + " | ".join(configs) + " | paper |",
        "|---" * (len(configs) + 2) + "|",
    ]
    for line in _lines(report):
        cells = " | ".join(line.cell(c) if c else "-" for c in configs.values())
        lines.append(f"| {line.what} | {cells} | {line.paper or '-'} |")
    lines += [
        "",
        f"Similarity is the mean cosine similarity of two utterances ({_methods(report)}):",
        "of the same character, and of different characters (up to 20,000 pairs, seeded).",
        "",
    ]
    titles = {figure_path(name): title for name, (title, _) in FIGURES.items()}
    for path in report.figures:
        lines += [f"![{titles.get(path, path)}]({path})", ""]
    return lines
