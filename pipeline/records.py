"""Explicit Arrow schemas of every stage's rows. Each row carries its parents' ids and fields,
so a shard can be read on its own, and the request key of every call that made it."""

from __future__ import annotations

import pyarrow as pa

STORY = pa.schema([("story_id", pa.string()), ("title", pa.string()), ("text", pa.string())])


def _extend(base: pa.Schema, *fields: tuple[str, pa.DataType]) -> pa.Schema:
    for name, kind in fields:
        base = base.append(pa.field(name, kind))
    return base


ACTOR = _extend(
    STORY,
    ("actor_id", pa.string()),
    ("actor", pa.string()),
    ("actor_description", pa.string()),
    ("actors_request", pa.string()),
)
UTTERANCE = _extend(
    ACTOR,
    ("utterance_id", pa.string()),
    ("intended_emotion", pa.string()),
    ("utterance", pa.string()),
    ("utterances_request", pa.string()),
)
LABELLED = _extend(
    UTTERANCE,
    ("labels", pa.list_(pa.string())),
    ("scores", pa.list_(pa.float64())),
    ("unmapped_labels", pa.list_(pa.string())),
    ("labels_request", pa.string()),
)
CONTEXTUAL = _extend(
    LABELLED,
    ("context_raw", pa.string()),
    ("context_request", pa.string()),
    ("context", pa.string()),
    ("clean_request", pa.string()),
)
REWRITTEN = _extend(
    CONTEXTUAL,
    ("rewritten_utterance", pa.string()),
    ("rewrite_request", pa.string()),
)
REJECT = pa.schema(
    [
        ("stage", pa.string()),
        ("shard", pa.int32()),
        ("call", pa.string()),
        ("input_id", pa.string()),
        ("scope", pa.string()),  # "request": the input row was rejected; "item": part of an answer
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("attempts", pa.int32()),
        ("request", pa.string()),
        ("raw_answer", pa.string()),
    ]
)
CORPUS_REJECT = pa.schema(
    [
        ("location", pa.string()),
        ("story_id", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
    ]
)
