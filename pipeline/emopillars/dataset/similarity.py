"""How alike utterances are: cosine similarity within one actor's utterances and across
actors', by sentence embeddings or, without them, by a lexical stand-in (TF-IDF of words).

The paper reports 0.30 within and 0.16 across actors. Both means are bounded in cost: the
within-actor mean sums each actor's vectors (the pairs of n unit vectors add up to
(|sum|^2 - n) / 2), and the cross-actor mean reads at most MAX_CROSS_PAIRS pairs, all of them
when there are that few, else a seeded sample. Beyond MAX_ACTORS actors, a seeded sample of
actors stands for all, so 300K rows cost no more than 50K.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from emopillars.stages.lexicon import words

if TYPE_CHECKING:
    from emopillars.dataset.embeddings import Embedder

LEXICAL_METHOD = "lexical: tf-idf cosine of words"
MAX_ACTORS = 5_000
MAX_CROSS_PAIRS = 20_000
SEED = 0  # the samples are part of the report, which must not change between identical runs


class Rows(Protocol):
    """Vectors, one row per text, each of length 1 (or 0 for a text without words)."""

    def norms_squared(self) -> np.ndarray: ...

    def group_sums_squared(self, groups: np.ndarray, count: int) -> np.ndarray:
        """|sum of the rows of group g|^2 for each g in range(count)."""
        ...

    def pair_dots(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """The dot product of rows left[k] and right[k], for each k."""
        ...


class Vectorizer(Protocol):
    method: str  # how the report names the measure

    def __call__(self, texts: Sequence[str]) -> Rows: ...


def _row_dots(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    return np.asarray(np.einsum("ij,ij->i", first, second), dtype=np.float64)


@dataclass(frozen=True)
class DenseRows:
    matrix: np.ndarray  # (n, d)

    def norms_squared(self) -> np.ndarray:
        return _row_dots(self.matrix, self.matrix)

    def group_sums_squared(self, groups: np.ndarray, count: int) -> np.ndarray:
        sums = np.zeros((count, self.matrix.shape[1]), dtype=np.float64)
        np.add.at(sums, groups, self.matrix)
        return _row_dots(sums, sums)

    def pair_dots(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        return _row_dots(self.matrix[left], self.matrix[right])


@dataclass(frozen=True)
class SparseRows:
    """Compressed rows (CSR) with the column indices of each row unique."""

    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    width: int

    def _row_of_entry(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.indptr) - 1), np.diff(self.indptr))

    def norms_squared(self) -> np.ndarray:
        return np.bincount(
            self._row_of_entry(), weights=self.data**2, minlength=len(self.indptr) - 1
        )

    def group_sums_squared(self, groups: np.ndarray, count: int) -> np.ndarray:
        keys = groups[self._row_of_entry()].astype(np.int64) * self.width + self.indices
        unique, inverse = np.unique(keys, return_inverse=True)
        sums = np.bincount(inverse, weights=self.data)
        return np.bincount(unique // self.width, weights=sums**2, minlength=count)

    def pair_dots(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        # Entries keyed (pair, column): the keys both sides share are the products to add.
        left_keys, left_values = self._entries(left)
        right_keys, right_values = self._entries(right)
        _, at_left, at_right = np.intersect1d(
            left_keys, right_keys, assume_unique=True, return_indices=True
        )
        products = left_values[at_left] * right_values[at_right]
        return np.bincount(left_keys[at_left] // self.width, products, minlength=len(left))

    def _entries(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        starts = self.indptr[rows]
        counts = self.indptr[rows + 1] - starts
        pair = np.repeat(np.arange(len(rows)), counts)
        offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        positions = np.repeat(starts, counts) + offsets
        return pair * self.width + self.indices[positions], self.data[positions]


def tfidf_rows(texts: Sequence[str]) -> SparseRows:
    """TF-IDF of each text's words, L2-normalised: tf the count of the word in the text, idf
    ln((1 + N) / (1 + df)) + 1 over the N texts given (scikit-learn's smooth idf)."""
    vocabulary: dict[str, int] = {}
    row_ids: list[int] = []
    columns: list[int] = []
    for row, text in enumerate(texts):
        for word in words(text):
            row_ids.append(row)
            columns.append(vocabulary.setdefault(word, len(vocabulary)))
    width = max(len(vocabulary), 1)
    keys = np.asarray(row_ids, dtype=np.int64) * width + np.asarray(columns, dtype=np.int64)
    unique, counts = np.unique(keys, return_counts=True)  # sorted: by row, then column
    rows, indices = unique // width, unique % width
    document_frequency = np.bincount(indices, minlength=width)
    idf = np.log((1 + len(texts)) / (1 + document_frequency)) + 1.0
    data = counts * idf[indices]
    norms = np.sqrt(np.bincount(rows, weights=data**2, minlength=len(texts)))
    data = data / norms[rows] if len(data) else data.astype(np.float64)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=len(texts)))])
    return SparseRows(indptr=indptr, indices=indices, data=data, width=width)


class LexicalVectorizer:
    method = LEXICAL_METHOD

    def __call__(self, texts: Sequence[str]) -> Rows:
        return tfidf_rows(texts)


class EmbeddingVectorizer:
    def __init__(self, embedder: Embedder) -> None:
        self.method = f"embeddings: cosine of {embedder.name}"
        self._embedder = embedder

    def __call__(self, texts: Sequence[str]) -> Rows:
        return DenseRows(np.asarray(self._embedder(list(texts)), dtype=np.float64))


@dataclass(frozen=True)
class ActorSimilarity:
    within: float | None  # None: no actor has two utterances
    cross: float | None  # None: fewer than two actors
    actors: int  # measured (at most MAX_ACTORS)


def actor_similarity(
    texts: Sequence[str], actors: Sequence[str], vectorize: Vectorizer
) -> ActorSimilarity:
    names, groups = np.unique(np.asarray(actors, dtype=object), return_inverse=True)
    if len(names) > MAX_ACTORS:
        chosen = np.sort(np.random.default_rng(SEED).choice(len(names), MAX_ACTORS, False))
        keep = np.isin(groups, chosen)
        groups = np.searchsorted(chosen, groups[keep])
        texts = [text for text, kept in zip(texts, keep, strict=True) if kept]
        names = names[chosen]
    if not len(texts):
        return ActorSimilarity(None, None, 0)
    rows = vectorize(texts)
    sizes = np.bincount(groups, minlength=len(names))
    pairs = int((sizes * (sizes - 1) // 2).sum())
    within = None
    if pairs:
        sums = rows.group_sums_squared(groups, len(names))
        norms = np.bincount(groups, weights=rows.norms_squared(), minlength=len(names))
        within = float((sums - norms).sum() / 2 / pairs)
    left, right = cross_pairs(groups)
    cross = float(rows.pair_dots(left, right).mean()) if len(left) else None
    return ActorSimilarity(within, cross, len(names))


def cross_pairs(groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of rows of different groups: all of them when there are at most
    MAX_CROSS_PAIRS (and few rows), else MAX_CROSS_PAIRS drawn with a fixed seed."""
    n = len(groups)
    sizes = np.bincount(groups) if n else np.zeros(0, dtype=np.int64)
    total = (n * n - int((sizes**2).sum())) // 2
    if total <= MAX_CROSS_PAIRS and n * (n - 1) // 2 <= 4 * MAX_CROSS_PAIRS:
        left, right = np.triu_indices(n, 1)
        differ = groups[left] != groups[right]
        return left[differ], right[differ]
    rng = np.random.default_rng(SEED)
    found_left: list[np.ndarray] = []
    found_right: list[np.ndarray] = []
    found = 0
    for _ in range(50):  # a few rounds unless nearly every row is one actor's
        left, right = rng.integers(0, n, size=(2, 2 * MAX_CROSS_PAIRS))
        differ = groups[left] != groups[right]
        found_left.append(left[differ])
        found_right.append(right[differ])
        found += int(differ.sum())
        if found >= MAX_CROSS_PAIRS:
            break
    return (
        np.concatenate(found_left)[:MAX_CROSS_PAIRS],
        np.concatenate(found_right)[:MAX_CROSS_PAIRS],
    )


def paired_similarity(
    first: Sequence[str], second: Sequence[str], vectorize: Vectorizer
) -> float | None:
    """The mean similarity of first[k] and second[k] (a rewrite and its original), with the
    texts of both sides vectorised together (for TF-IDF: one idf over 2N texts); over a seeded
    sample of MAX_CROSS_PAIRS pairs when there are more."""
    if not first:
        return None
    if len(first) > MAX_CROSS_PAIRS:
        sample = np.sort(np.random.default_rng(SEED).choice(len(first), MAX_CROSS_PAIRS, False))
        first, second = [first[k] for k in sample], [second[k] for k in sample]
    rows = vectorize([*first, *second])
    index = np.arange(len(first))
    return float(rows.pair_dots(index, index + len(first)).mean())
