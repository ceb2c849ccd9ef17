"""The quality report's numbers (quality.json), measured on one dataset config at a time.

Every number is a function of the rows alone (the similarity samples are seeded) and floats
are rounded, so identical data gives a byte-identical quality.json. The paper's figures are
kept beside them (PAPER) for the summary and the card.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations, permutations
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from emopillars.dataset.similarity import Vectorizer, actor_similarity, paired_similarity
from emopillars.stages.lexicon import EmotionLexicon, words
from emopillars.stages.taxonomy import LABELS, NEUTRAL

FORMAT = 1
DIGITS = 4
# Emo Pillars (Shvets, 2025) on its 300K-example dataset.
PAPER = {
    "labels_per_example": 3.17,
    "neutral_share": 0.09,
    "within_actor_similarity": 0.30,
    "cross_actor_similarity": 0.16,
}
# Utterances of one actor whose word sets overlap this much (Jaccard) are near duplicates.
NEAR_DUPLICATE_JACCARD = 0.8
INTENSITY_BINS = 10  # of width 0.1 over 0.0-1.0; 1.0 falls in the last

Tokens = Sequence[list[str]]  # the words of each text (lexicon.words)


def rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), DIGITS)


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LengthDistribution(Frozen):
    """Words per text."""

    min: int
    p10: float
    median: float
    mean: float
    p90: float
    max: int


class SplitQuality(Frozen):
    rows: int
    labels_per_example: float | None
    neutral_share: float | None
    intended_in_labels: float | None


class ConfigQuality(Frozen):
    rows: int
    stories: int  # stories the measured rows could come from (those of finished shards)
    rows_per_story: float | None
    splits: dict[str, SplitQuality]
    labels_per_example: float | None
    neutral_share: float | None  # examples that carry neutral
    intended_in_labels: float | None  # examples whose intended emotion is among the labels
    # label -> share of examples: labelled with it, and asked for it
    label_distribution: dict[str, float]
    intended_distribution: dict[str, float]
    intended_vs_labels: dict[str, dict[str, int]]  # intended -> label -> examples (non-zero)
    label_cooccurrence: dict[str, dict[str, int]]  # label -> other label -> examples with both
    intensity_histogram: dict[str, int]  # "0.3-0.4" -> label scores in [0.3, 0.4)
    distinct_1: float | None  # distinct words / words, over all utterances
    distinct_2: float | None  # distinct word pairs / word pairs (within an utterance)
    exact_duplicates: int  # rows whose utterance (as words) repeats an earlier row's
    near_duplicates: int  # rows with a not identical utterance of the same actor this close
    near_duplicate_jaccard: float
    within_actor_similarity: float | None
    cross_actor_similarity: float | None
    similarity_method: str
    similarity_actors: int  # actors measured (a seeded sample beyond similarity.MAX_ACTORS)


class ContextAwareQuality(ConfigQuality):
    context_words: LengthDistribution | None
    context_emotion_word_share: float | None  # None: the run's prompts have no word list
    original_emotion_word_share: float | None  # utterances before the rewrite
    rewrite_emotion_word_share: float | None  # and after it
    rewrite_length_ratio_median: float | None  # words of the rewrite / of the original
    rewrite_similarity: float | None  # of a rewrite to its original, by similarity_method


class StageYield(Frozen):
    inputs: int
    accepted: int  # answers
    rejected: int  # answers, each with one reason
    item_rejects: int  # single items of accepted answers (an actor, an utterance)
    outputs: int  # items kept
    reject_reasons: dict[str, int]  # of answers and items


class ConfigsQuality(Frozen):
    context_less: ConfigQuality | None  # None: no finished shard yet
    context_aware: ContextAwareQuality | None


class QualityReport(Frozen):
    format: int = FORMAT
    source: Literal["dataset", "stage shards"]
    complete: bool
    missing: list[str]  # the parts of the run this report could not measure yet
    paper: dict[str, float]
    configs: ConfigsQuality
    stages: dict[str, StageYield]
    files: dict[str, str]  # data file (relative to the dataset folder) -> sha256 measured
    figures: list[str]  # PNG files relative to the dataset folder

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"


@dataclass(frozen=True)
class Examples:
    """The columns of one config that the report reads, one list entry per row."""

    split: list[str]
    story_id: list[str]
    actor_id: list[str]
    utterance: list[str]
    intended: list[str]
    labels: list[list[int]]  # class ids into LABELS
    scores: list[list[float]]
    context: list[str] | None = None  # context_aware only
    original: list[str] | None = None

    @classmethod
    def from_columns(cls, columns: dict[str, list[Any]]) -> Examples:
        return cls(
            split=columns["split"],
            story_id=columns["story_id"],
            actor_id=columns["actor_id"],
            utterance=columns["utterance"],
            intended=columns["intended_emotion"],
            labels=columns["labels"],
            scores=columns["scores"],
            context=columns.get("context"),
            original=columns.get("original_utterance"),
        )


def share(count: int, total: int) -> float | None:
    return rounded(count / total) if total else None


def label_numbers(
    labels: Sequence[Sequence[int]], intended: Sequence[str]
) -> tuple[float | None, float | None, float | None]:
    """Labels per example, the share with neutral, and the share whose intended emotion is
    among the labels."""
    rows = len(labels)
    neutral = LABELS.index(NEUTRAL)
    mean = rounded(sum(len(row) for row in labels) / rows) if rows else None
    with_neutral = sum(neutral in row for row in labels)
    hit = sum(
        emotion in {LABELS[i] for i in row} for row, emotion in zip(labels, intended, strict=True)
    )
    return mean, share(with_neutral, rows), share(hit, rows)


def distinct_n(said: Tokens, n: int) -> float | None:
    """Distinct n-grams over all n-grams, n-grams taken within each text."""
    grams: list[tuple[str, ...]] = []
    for text in said:
        grams += zip(*(text[k:] for k in range(n)), strict=False)
    return share(len(set(grams)), len(grams))


def duplicates(said: Tokens, actors: Sequence[str]) -> tuple[int, int]:
    """Exact duplicates over the config (texts equal as words), and near duplicates: texts
    with a different text of the same actor whose word set is this close."""
    normal = [" ".join(text) for text in said]
    exact = len(normal) - len(set(normal))
    sets = [set(text) for text in said]
    by_actor: dict[str, list[int]] = {}
    for row, actor in enumerate(actors):
        by_actor.setdefault(actor, []).append(row)
    near: set[int] = set()
    for rows in by_actor.values():
        for a, b in combinations(rows, 2):
            union = len(sets[a] | sets[b])
            if normal[a] == normal[b] or not union:
                continue
            if len(sets[a] & sets[b]) / union >= NEAR_DUPLICATE_JACCARD:
                near.update((a, b))
    return exact, len(near)


def intensity_histogram(scores: Sequence[Sequence[float]]) -> dict[str, int]:
    flat = np.asarray([score for row in scores for score in row], dtype=np.float64)
    # A small tolerance: 0.3 is stored as 0.29999999999999999 and belongs to 0.3-0.4.
    bins = np.clip(np.floor(flat * INTENSITY_BINS + 1e-9), 0, INTENSITY_BINS - 1).astype(int)
    counts = np.bincount(bins, minlength=INTENSITY_BINS)
    return {
        f"{k / INTENSITY_BINS:.1f}-{(k + 1) / INTENSITY_BINS:.1f}": int(counts[k])
        for k in range(INTENSITY_BINS)
    }


def length_distribution(said: Tokens) -> LengthDistribution | None:
    lengths = np.asarray([len(text) for text in said], dtype=np.float64)
    if not len(lengths):
        return None
    p10, median, p90 = np.percentile(lengths, [10, 50, 90])
    return LengthDistribution(
        min=int(lengths.min()),
        p10=round(float(p10), 2),
        median=round(float(median), 2),
        mean=round(float(lengths.mean()), 2),
        p90=round(float(p90), 2),
        max=int(lengths.max()),
    )


def _pairs(matrix: Counter[tuple[str, str]]) -> dict[str, dict[str, int]]:
    nested: dict[str, dict[str, int]] = {}
    for (first, second), count in sorted(matrix.items()):
        nested.setdefault(first, {})[second] = count
    return nested


def measure_config(
    examples: Examples, said: Tokens, stories: int, splits: Sequence[str], vectorize: Vectorizer
) -> ConfigQuality:
    """The numbers that both configs have; `said` holds the words of each utterance
    (tokenised once: that is most of the time this takes)."""
    rows = len(examples.labels)
    named = [[LABELS[i] for i in row] for row in examples.labels]
    labelled = Counter(label for row in named for label in set(row))
    asked = Counter(examples.intended)
    by_split = {}
    for split in splits:
        chosen = [k for k, name in enumerate(examples.split) if name == split]
        mean, neutral, hit = label_numbers(
            [examples.labels[k] for k in chosen], [examples.intended[k] for k in chosen]
        )
        by_split[split] = SplitQuality(
            rows=len(chosen), labels_per_example=mean, neutral_share=neutral, intended_in_labels=hit
        )
    mean, neutral, hit = label_numbers(examples.labels, examples.intended)
    exact, near = duplicates(said, examples.actor_id)
    similar = actor_similarity(examples.utterance, examples.actor_id, vectorize)
    return ConfigQuality(
        rows=rows,
        stories=stories,
        rows_per_story=rounded(rows / stories) if stories else None,
        splits=by_split,
        labels_per_example=mean,
        neutral_share=neutral,
        intended_in_labels=hit,
        label_distribution={label: share(labelled[label], rows) or 0.0 for label in LABELS},
        intended_distribution={label: share(asked[label], rows) or 0.0 for label in LABELS},
        intended_vs_labels=_pairs(
            Counter(
                (emotion, label)
                for emotion, row in zip(examples.intended, named, strict=True)
                for label in set(row)
            )
        ),
        label_cooccurrence=_pairs(
            Counter(pair for row in named for pair in permutations(set(row), 2))
        ),
        intensity_histogram=intensity_histogram(examples.scores),
        distinct_1=distinct_n(said, 1),
        distinct_2=distinct_n(said, 2),
        exact_duplicates=exact,
        near_duplicates=near,
        near_duplicate_jaccard=NEAR_DUPLICATE_JACCARD,
        within_actor_similarity=rounded(similar.within),
        cross_actor_similarity=rounded(similar.cross),
        similarity_method=vectorize.method,
        similarity_actors=similar.actors,
    )


def measure_context_less(
    examples: Examples, stories: int, splits: Sequence[str], vectorize: Vectorizer
) -> ConfigQuality:
    said = [words(text) for text in examples.utterance]
    return measure_config(examples, said, stories, splits, vectorize)


def measure_context_aware(
    examples: Examples,
    stories: int,
    splits: Sequence[str],
    vectorize: Vectorizer,
    lexicon: EmotionLexicon | None,
) -> ContextAwareQuality:
    contexts = [words(text) for text in examples.context or []]
    originals = [words(text) for text in examples.original or []]
    rewrites = [words(text) for text in examples.utterance]

    def emotion_word_share(said: Tokens) -> float | None:
        if lexicon is None:
            return None
        hits = sum(any(word in lexicon.labels_of for word in text) for text in said)
        return share(hits, len(said))

    ratios = [
        len(rewrite) / len(original)
        for rewrite, original in zip(rewrites, originals, strict=True)
        if original
    ]
    common = measure_config(examples, rewrites, stories, splits, vectorize)
    return ContextAwareQuality(
        **dict(common),
        context_words=length_distribution(contexts),
        context_emotion_word_share=emotion_word_share(contexts),
        original_emotion_word_share=emotion_word_share(originals),
        rewrite_emotion_word_share=emotion_word_share(rewrites),
        rewrite_length_ratio_median=rounded(float(np.median(ratios))) if ratios else None,
        rewrite_similarity=rounded(
            paired_similarity(examples.utterance, examples.original or [], vectorize)
        ),
    )
