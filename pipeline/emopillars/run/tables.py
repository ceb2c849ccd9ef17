"""Arrow schemas of the tables the runner writes beside the stages' own rows (whose schemas
the stages declare): rejects, corpus rejects and kept answers."""

from __future__ import annotations

import pyarrow as pa

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
ANSWER = pa.schema(
    [
        ("key", pa.string()),  # the request key: a hash of everything that was sent
        ("call", pa.string()),
        ("text", pa.string()),
        ("finish_reason", pa.string()),
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
        ("error", pa.string()),
    ]
)
