"""The dataset card: YAML metadata that `datasets` and the Hub read, and a body that says how
the data was made. Deterministic: no timestamps, so identical runs give identical cards."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict

from emopillars.dataset.measured import Measurement
from emopillars.dataset.measured import card_section as measured_section
from emopillars.dataset.quality import QualityReport
from emopillars.dataset.quality_text import card_section
from emopillars.engines import EngineInfo
from emopillars.run.manifest import StageTotals
from emopillars.run.record import RunRecord
from emopillars.stages.taxonomy import LABELS

CITATION = """@inproceedings{shvets-2025-emo,
  title     = {Emo Pillars: Knowledge Distillation to Support Fine-Grained Context-Aware and
               Context-Less Emotion Classification},
  author    = {Shvets, Alexander},
  booktitle = {Findings of the Association for Computational Linguistics: ACL 2025},
  year      = {2025},
  pages     = {174--191},
  doi       = {10.18653/v1/2025.findings-acl.10}
}"""

SAMPLE_CORPUS_LICENSE = "cc0-1.0"
SHARE_ALIKE_LICENSE = "cc-by-sa-4.0"
# Licenses a CC BY-SA derivative may carry (share-alike: the same license, same or later).
SHARE_ALIKE_COMPATIBLE = frozenset({"cc-by-sa-3.0", "cc-by-sa-4.0"})


class ModelIdentity(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    revision: str | None  # None: the run did not pin one


def model_identity(engine: EngineInfo) -> ModelIdentity:
    """The teacher model and the revision the run pinned (None when it pinned none)."""
    return ModelIdentity(id=engine.model, revision=engine.revision)


@dataclass(frozen=True)
class LicenseChoice:
    license_id: str
    corpus: str  # how the card names the seed corpus
    corpus_license: str | None  # None: not known
    warning: str | None  # set when the dataset license breaks the corpus's share-alike terms


def choose_license(license_id: str | None, config: dict[str, Any]) -> LicenseChoice:
    """The dataset license (`license_id`, else the corpus's own when it is known) and a warning
    when a CC BY-SA corpus would be relicensed incompatibly."""
    corpus = config.get("corpus")
    corpus_license: str | None
    if corpus is None:
        name, corpus_license = "the emopillars sample corpus", SAMPLE_CORPUS_LICENSE
    else:
        name = f"`{PurePath(str(corpus)).name}`"
        corpus_license = config.get("corpus_license")
    chosen = license_id or corpus_license or "other"
    warning = None
    share_alike = (corpus_license or "").startswith("cc-by-sa")
    if share_alike and chosen not in SHARE_ALIKE_COMPATIBLE:
        warning = (
            f"the corpus {name} is {corpus_license} (share-alike, as WikiPlots and other "
            f"Wikipedia-derived text are): a dataset made from it must keep a CC BY-SA "
            f"license, but its license is {chosen}; publish with --license {SHARE_ALIKE_LICENSE}"
        )
    return LicenseChoice(chosen, name, corpus_license, warning)


def _size_category(rows: int) -> str:
    for limit, name in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
    ):
        if rows < limit:
            return name
    return "1M<n<10M"


def _yaml_features(features: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name, feature in features.items():
        if name == "labels":
            names = {str(i): label for i, label in enumerate(LABELS)}
            out.append({"name": name, "list": {"class_label": {"names": names}}})
        elif name == "scores":
            out.append({"name": name, "list": "float64"})
        else:
            out.append({"name": name, "dtype": feature["dtype"]})
    return out


def render_card(
    counts: dict[str, dict[str, int]],
    label_counts: dict[str, Counter[str]],
    totals: dict[str, StageTotals],
    run: RunRecord,
    license_id: str | None,
    features: dict[str, dict[str, Any]],
    *,
    quality: QualityReport | None = None,
    repo_id: str | None = None,
    measured: Sequence[Measurement] = (),
) -> str:
    """The card of a dataset; `repo_id` (the Hub repo it is published to) goes in the usage
    example, which otherwise shows a placeholder. With `quality`, a "Quality" section shows
    its numbers and links its figures; with `measured`, a "Measured" section shows the
    classifier and teacher scores attached to the run."""
    config = run.config
    total_rows = sum(sum(splits.values()) for splits in counts.values())
    licensing = choose_license(license_id, config)
    metadata = {
        "pretty_name": "Emo Pillars synthetic emotion data",
        "license": licensing.license_id,
        "language": ["en"],
        "task_categories": ["text-classification"],
        "task_ids": ["multi-label-classification"],
        "annotations_creators": ["machine-generated"],
        "language_creators": ["machine-generated"],
        "multilinguality": ["monolingual"],
        "source_datasets": ["original"],
        "size_categories": [_size_category(total_rows)],
        "tags": ["emotion", "synthetic", "goemotions"],
        "configs": [
            {
                "config_name": name,
                **({"default": True} if name == "context_less" else {}),
                "data_files": [
                    {"split": split, "path": f"{name}/{split}-*.parquet"}
                    for split, rows in splits.items()
                    if rows
                ],
            }
            for name, splits in counts.items()
        ],
        "dataset_info": [
            {
                "config_name": name,
                "features": _yaml_features(features[name]),
            }
            for name, splits in counts.items()
        ],
    }
    header = yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True)
    body = [
        *_how_it_was_made(run),
        *_size_and_labels(counts, label_counts),
        *_rejects(totals),
        *(card_section(quality) if quality is not None else []),
        *measured_section(list(measured)),
        *_limitations_and_use(repo_id),
        *_license(licensing),
        "## Citation",
        "",
        "```bibtex",
        CITATION,
        "```",
        "",
    ]
    return f"---\n{header}---\n\n" + "\n".join(body)


def _how_it_was_made(run: RunRecord) -> list[str]:
    config, engine = run.config, run.engine
    lines = ["# Emo Pillars synthetic emotion data", ""]
    if engine.name == "fake":
        lines += [
            "> **Made with the fake engine**: the texts are random words and the labels are",
            "> random. This folder only shows the shape of a dataset; do not train on it.",
            "",
        ]
    teacher = model_identity(engine)
    penalty = config.get("repetition_penalty") or "the engine's default for its model"
    lines += [
        "Utterances of story characters with multi-label soft emotion labels over the 28",
        "GoEmotions categories, made by distilling a language model with the Emo Pillars method.",
        "",
        "- `context_less`: an utterance, its labels (class ids) and their intensities (`scores`).",
        "- `context_aware`: the situation before the utterance (`context`), an utterance",
        "  rewritten so that its emotions need the context, the original utterance, and labels.",
        "",
        "## How it was made",
        "",
        "1. Actor extraction: the characters of each story.",
        f"2. Utterance generation: per character {config['emotions_per_actor']} utterances with",
        f"   distinct emotions and {config['neutral_per_actor']} neutral ones.",
        f"3. Soft labelling without the story: up to {config['max_labels']} emotions with",
        f"   intensities 0.0-1.0; labels at or above {config['label_threshold']} kept,",
        "   off-taxonomy labels mapped by a synonym dictionary or counted.",
        "4. Context generation, then a cleaning pass that removes named emotions.",
        "5. Rewriting of the utterance so that the context becomes necessary.",
        "",
        f"- Teacher model: `{teacher.id}`, revision `{teacher.revision or 'not pinned'}`"
        f" (engine `{engine.name}`)",
        f"- Sampling: temperature {config['temperature']}, repetition penalty {penalty},"
        f" seed {config['seed']}; up to {config['max_attempts']} tries per request, retries at"
        f" temperature {config['retry_temperature']} with a new seed",
        f"- Prompt version: `{config['prompt_version']}` (the sha256 of every prompt file is in",
        "  `provenance.json` when the dataset is published)",
        "",
    ]
    return lines


def _size_and_labels(
    counts: dict[str, dict[str, int]], label_counts: dict[str, Counter[str]]
) -> list[str]:
    lines = ["## Size", "", "| config | train | validation | test |", "|---|---|---|---|"]
    for name, splits in counts.items():
        lines.append(f"| {name} | {splits['train']} | {splits['validation']} | {splits['test']} |")
    lines += ["", "Stories never cross splits.", "", "## Label distribution", ""]
    lines += ["| label | " + " | ".join(counts) + " |", "|---" * (len(counts) + 1) + "|"]
    for label in LABELS:
        cells = " | ".join(str(label_counts[name].get(label, 0)) for name in counts)
        lines.append(f"| {label} | {cells} |")
    return [*lines, ""]


def _rejects(totals: dict[str, StageTotals]) -> list[str]:
    lines = ["## Rejected answers per stage", "", "| stage | inputs | rejected | reasons |"]
    lines.append("|---|---|---|---|")
    for stage, total in totals.items():
        reasons = ", ".join(f"{reason} {n}" for reason, n in total.reject_reasons.items()) or "-"
        lines.append(f"| {stage} | {total.inputs} | {total.rejected} | {reasons} |")
    return [*lines, ""]


def _limitations_and_use(repo_id: str | None) -> list[str]:
    return [
        "## Known limitations",
        "",
        "- Neutral utterances are less diverse than emotional ones.",
        "- The teacher model sometimes answers with labels outside the taxonomy; the unmapped",
        "  ones are counted above, not used.",
        "- Labels carry the teacher model's biases; they are not human annotations.",
        "",
        "## Use",
        "",
        "```python",
        "from datasets import load_dataset",
        f'data = load_dataset("{repo_id or "PATH_OR_REPO"}", "context_less")  # or "context_aware"',
        'names = data["train"].features["labels"].feature.names  # class id -> emotion',
        "```",
        "",
    ]


def _license(licensing: LicenseChoice) -> list[str]:
    corpus_license = (
        f"`{licensing.corpus_license}`"
        if licensing.corpus_license
        else "not recorded by the run: check it before you share this dataset"
    )
    lines = [
        "## License",
        "",
        f"Dataset license: `{licensing.license_id}`. Seed corpus: {licensing.corpus}, license "
        f"{corpus_license}.",
        "",
        "The texts derive from the seed stories: a dataset made from a CC BY-SA corpus (such",
        "as Wikipedia plots) must keep that license.",
        "",
    ]
    if licensing.warning:
        lines += [f"> **Warning**: {licensing.warning}.", ""]
    return lines
