"""The dataset card: YAML metadata that `datasets` and the Hub read, and a body that says how
the data was made. Deterministic: no timestamps, so identical runs give identical cards."""

from __future__ import annotations

from collections import Counter
from typing import Any

import yaml

from pipeline.manifest import StageTotals
from pipeline.taxonomy import LABELS

CITATION = """@inproceedings{shvets-2025-emo,
  title     = {Emo Pillars: Knowledge Distillation to Support Fine-Grained Context-Aware and
               Context-Less Emotion Classification},
  author    = {Shvets, Alexander},
  booktitle = {Findings of the Association for Computational Linguistics: ACL 2025},
  year      = {2025},
  pages     = {174--191},
  doi       = {10.18653/v1/2025.findings-acl.10}
}"""


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
    run: dict[str, Any],
    license_id: str | None,
    features: dict[str, dict[str, Any]],
) -> str:
    config = run["config"]
    engine = run["engine"]
    total_rows = sum(sum(splits.values()) for splits in counts.values())
    sample_corpus = config.get("corpus") is None
    license_value = license_id or ("cc0-1.0" if sample_corpus else "other")
    metadata = {
        "pretty_name": "Emo Pillars synthetic emotion data",
        "license": license_value,
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
    return f"---\n{header}---\n\n{_body(counts, label_counts, totals, config, engine)}"


def _body(
    counts: dict[str, dict[str, int]],
    label_counts: dict[str, Counter[str]],
    totals: dict[str, StageTotals],
    config: dict[str, Any],
    engine: dict[str, Any],
) -> str:
    lines = ["# Emo Pillars synthetic emotion data", ""]
    if engine["name"] == "fake":
        lines += [
            "> **Made with the fake engine**: the texts are random words and the labels are",
            "> random. This folder only shows the shape of a dataset; do not train on it.",
            "",
        ]
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
        f"- Engine: `{engine['name']}`, model `{engine['model']}`",
        f"- Prompt version: `{config['prompt_version']}`; seed {config['seed']};"
        f" temperature {config['temperature']}; up to {config['max_attempts']} tries per request",
        "",
        "## Size",
        "",
        "| config | train | validation | test |",
        "|---|---|---|---|",
    ]
    for name, splits in counts.items():
        lines.append(f"| {name} | {splits['train']} | {splits['validation']} | {splits['test']} |")
    lines += ["", "Stories never cross splits.", "", "## Label distribution (context_less)", ""]
    lines += ["| label | examples |", "|---|---|"]
    lines += [f"| {label} | {label_counts['context_less'].get(label, 0)} |" for label in LABELS]
    lines += ["", "## Rejected answers per stage", "", "| stage | inputs | rejected | reasons |"]
    lines.append("|---|---|---|---|")
    for stage, total in totals.items():
        reasons = ", ".join(f"{reason} {n}" for reason, n in total.reject_reasons.items()) or "-"
        lines.append(f"| {stage} | {total.inputs} | {total.rejected} | {reasons} |")
    lines += [
        "",
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
        'data = load_dataset("PATH_OR_REPO", "context_less")',
        "```",
        "",
        "## License",
        "",
        "The texts derive from the seed stories: a dataset made from a CC BY-SA corpus (such",
        "as Wikipedia plots) must keep that license.",
        "",
        "## Citation",
        "",
        "```bibtex",
        CITATION,
        "```",
        "",
    ]
    return "\n".join(lines)
