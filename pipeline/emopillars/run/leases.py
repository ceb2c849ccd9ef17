"""Story shard leases: one process computes a story shard at a time.

Whoever computes a story shard's stages holds its lease, `DIR/locks/shards/shard-N.lock`:
a worker of a multi-worker run, a Ray task, a single-worker run. The assignment of shards to
workers (cluster/workers.py) keeps distinct workers apart already; the lease covers what it
cannot: two processes started with the same worker index (a job submitted twice, a Ray task
re-executed on another node while the first still runs). They would append to one journal
and replace each other's shard files.

A process that finds a lease held **waits** for it, rather than skipping the shard. When the
holder finishes, the shard's markers are current and the waiter passes over it without a
request to the engine; when the holder dies (the kernel releases its lock), the waiter takes
the lease over and resumes the shard from its journal. Either way no shard is computed twice
at once and none is left behind, which skipping could do: the waiter would exit successfully
while the shard it skipped might never finish.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from emopillars.run.layout import RunLayout
from emopillars.run.lockfile import READ_ONLY, Holder, NotedLock, describe

log = logging.getLogger("emopillars")


@contextmanager
def shard_lease(layout: RunLayout, shard: int, command: str) -> Iterator[None]:
    """Hold the lease of story shard `shard` for the duration, waiting for it if needed."""
    lease = NotedLock(layout.shard_lease(shard))
    try:
        taken = lease.try_acquire()
    except OSError as error:
        if error.errno not in READ_ONLY:
            raise
        # A folder that cannot be written from here: computing the shard would fail on its
        # first write, and a finished one is only read. Nothing to keep apart.
        taken = None
    if taken is False:
        log.warning(
            "story shard %d is being computed by %s: waiting for it (a process given the "
            "same worker index, or a retried task); then this one goes on",
            shard,
            describe(lease.holder()),
        )
        lease.try_acquire(wait=-1)
    if taken is not None:
        lease.announce(Holder.of_this_process(f"{command}, story shard {shard}"))
    try:
        yield
    finally:
        if taken is not None:
            lease.withdraw()
            lease.release()
