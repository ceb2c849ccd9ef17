"""The garbage collector during a run: collecting less often, for a run's own objects.

A run makes and drops millions of short-lived objects (rows, requests, answers) that hold no
cycles, while the process holds a large heap that lives as long as it does (the engine,
pydantic's and pyarrow's modules). CPython collects its youngest generation every 700 new
objects and, every hundredth time, walks that whole heap: about a twentieth of a run's CPU
with an instant engine. Collecting the youngest generation every GEN0_THRESHOLD objects
instead makes those walks rarer; cycles are still collected, a little later.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

GEN0_THRESHOLD = 20_000


@contextmanager
def collecting_less() -> Iterator[None]:
    """Raise the youngest generation's threshold for the block (never lower it); the
    thresholds are restored after, whatever happens in it."""
    thresholds = gc.get_threshold()
    gc.set_threshold(max(thresholds[0], GEN0_THRESHOLD), *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
