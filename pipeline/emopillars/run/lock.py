"""One writer per run folder.

Two runs writing one folder mix their shards into one dataset; an `assemble` or a `publish`
reading a folder that a run is writing sees half of it. So a folder has one writer at a time,
with one exception: the workers of a multi-worker run, which write disjoint story shards of
the same folder by design. The protocol, in three lock files (run/lockfile.py; OS locks, which
the kernel releases when their holder dies, however it dies):

- **The folder lock**, `DIR/.lock`, is held for the whole command by the one writer: a
  single-worker `run` (or the driver of a Ray run, whose tasks write for it), `assemble` and
  `publish`. Whoever finds it taken stops at once with RunFolderBusy, naming the holder.
- **Worker presence**, `DIR/locks/workers/<host>-<pid>-N.lock`, is held for its whole life by
  each worker of a multi-worker run. Workers do not take the folder lock, so any number of
  them share the folder.
- **The join lock**, `DIR/locks/join.lock`, makes the two exclusive of each other (filelock
  has no shared locks, so this stands in for one). A worker joins under it: it checks that
  the folder lock is free, then takes its presence lock. The one writer, once it has the
  folder lock, checks under it that no presence lock is held. Whichever comes second sees the
  other: a worker finds the folder lock taken, or the writer finds a presence lock held; and
  neither waits for the other while holding the join lock, so they cannot deadlock.

A presence file whose lock is free belongs to a dead worker: the writer deletes it, under
the join lock (the only lock a joining worker creates presence files under).

Workers of one run keep apart by story shard: each holds a shard's lease (run/leases.py)
while it computes that shard. The one writer sweeps the temporary files of interrupted writes
(run/sweep.py): it alone knows that nobody else is writing.

A folder that cannot be locked because it cannot be written from here (a read-only mount,
another user's folder) is used without a lock: nobody can write it through this mount either.
"""

from __future__ import annotations

import itertools
import logging
import re
import socket
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from emopillars.config import ExecutionOptions, RunConfig
from emopillars.run.layout import RunLayout
from emopillars.run.lockfile import READ_ONLY, Holder, NotedLock, describe
from emopillars.run.sweep import sweep_temporaries

log = logging.getLogger("emopillars")

# A worker holds the join lock for the few file operations of joining; on a slow shared
# filesystem with hundreds of workers starting at once, that can still add up to seconds.
JOIN_WAIT_S = 120.0
# A writer that finds the folder lock taken and no note beside it waits this long for the
# note (written right after the lock is taken), so that its message can name the holder.
NOTE_WAIT_S = 2.0

_presence_numbers = itertools.count()


class RunFolderBusy(RuntimeError):
    """Another process is writing the run folder. Nothing was attempted: wait for it to
    finish (or stop it), then run the command again."""


def role(execution: ExecutionOptions) -> str:
    """How a run names itself in the notes of the locks it holds."""
    if execution.executor == "ray":
        return "emopillars run --executor ray"
    if execution.num_workers > 1:
        return f"emopillars run worker {execution.worker_index} of {execution.num_workers}"
    return "emopillars run"


def for_run(config: RunConfig) -> AbstractContextManager[None]:
    """The lock a run holds: presence as a worker of several; else the folder lock, taken
    over from a dead holder if need be, with stale temporary files swept."""
    command = role(config.execution)
    if config.execution.num_workers > 1:
        return joined(config.output_dir, command)
    return exclusive(config.output_dir, command, sweep=True, create=True)


@contextmanager
def exclusive(
    run_dir: Path, command: str, *, sweep: bool = False, create: bool = False
) -> Iterator[None]:
    """Hold the folder lock of `run_dir` as its one writer; RunFolderBusy when another
    process writes it (the one writer, or workers of a multi-worker run). `sweep`: remove the
    temporary files of interrupted writes once the lock is held. Without `create`, a folder
    that does not exist is not created, and one that is no run folder is not locked: the
    command's own error says what is wrong, and no lock file is left in it."""
    layout = RunLayout(run_dir)
    if create:
        run_dir.mkdir(parents=True, exist_ok=True)
    is_run = create or layout.plan.is_file()
    lock = _take_folder_lock(layout, command) if is_run and run_dir.is_dir() else None
    try:
        if lock is not None and sweep:
            sweep_temporaries(layout)
        yield
    finally:
        if lock is not None:
            lock.withdraw()
            lock.release()


def _take_folder_lock(layout: RunLayout, command: str) -> NotedLock | None:
    lock = NotedLock(layout.lock)
    try:
        taken = lock.try_acquire()
    except OSError as error:
        if error.errno not in READ_ONLY:
            raise
        _unlocked(layout, error)
        return None
    if not taken and lock.holder() is None:
        # Taken a moment ago (its note is not written yet), or by a worker joining: either
        # releases it within moments or writes its name.
        taken = lock.try_acquire(wait=NOTE_WAIT_S)
    if not taken:
        raise RunFolderBusy(_busy_message(layout.root, describe(lock.holder())))
    lock.announce(Holder.of_this_process(command))
    try:
        _refuse_if_workers(layout)
    except BaseException:
        lock.withdraw()
        lock.release()
        raise
    return lock


def _refuse_if_workers(layout: RunLayout) -> None:
    """Raise RunFolderBusy when a worker of a multi-worker run is at work in the folder;
    delete the presence files of dead workers."""
    gate = NotedLock(layout.join_lock)
    if not gate.try_acquire(wait=JOIN_WAIT_S):
        raise RunFolderBusy(
            f"{layout.root}: workers kept joining the run for {JOIN_WAIT_S:.0f} s "
            f"({layout.join_lock} stayed locked): wait for them to finish, then run this "
            "command again"
        )
    working: list[Holder | None] = []
    try:
        for path in sorted(layout.worker_locks.glob("*.lock")):
            presence = NotedLock(path)
            if not presence.try_acquire():
                working.append(presence.holder())
                continue
            # Its worker is gone (the kernel released its lock): nobody will open it again.
            path.unlink(missing_ok=True)
            presence.withdraw()
            presence.release()
    finally:
        gate.release()
    if working:
        workers = "a worker" if len(working) == 1 else f"{len(working)} workers"
        raise RunFolderBusy(
            _busy_message(
                layout.root,
                f"{workers} of a multi-worker run, such as {describe(working[0])}",
                wait="wait for every worker to finish",
            )
        )


@contextmanager
def joined(run_dir: Path, command: str) -> Iterator[None]:
    """Be one of the workers of a multi-worker run in `run_dir` for the duration;
    RunFolderBusy when the folder's one writer (a single-worker run, assemble, publish)
    holds it."""
    presence = _join(RunLayout(run_dir), command)
    try:
        yield
    finally:
        if presence is not None:
            # Only writers probe presence files, without waiting: deleting one is safe.
            presence.path.unlink(missing_ok=True)
            presence.withdraw()
            presence.release()


def _join(layout: RunLayout, command: str) -> NotedLock | None:
    """Under the join lock: check that no one writer holds the folder, and take presence
    (None when the folder cannot be locked from here)."""
    layout.root.mkdir(parents=True, exist_ok=True)
    gate = _join_gate(layout, JOIN_WAIT_S)
    if gate is None:
        return None
    try:
        _refuse_if_writer(layout)
        host = re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname())
        holder = Holder.of_this_process(command)
        name = f"{host}-{holder.pid}-{next(_presence_numbers)}.lock"
        presence = NotedLock(layout.worker_locks / name)
        if not presence.try_acquire():
            # The name is this process's own: only a hung process with our pid holds it.
            raise RunFolderBusy(f"{presence.path} is locked by {describe(presence.holder())}")
        presence.announce(holder)
    finally:
        gate.release()
    return presence


def check_joinable(run_dir: Path) -> None:
    """RunFolderBusy when the folder's one writer holds `run_dir`: what each worker of a
    multi-worker run would find on joining, found once, before any is started (`launch`).
    A folder that was never locked (or does not exist yet) has no writer and is not touched."""
    layout = RunLayout(run_dir)
    if not layout.lock.exists():  # never locked: no writer (and none is made here)
        return
    gate = _join_gate(layout, JOIN_WAIT_S)
    if gate is None:
        return
    try:
        _refuse_if_writer(layout)
    finally:
        gate.release()


def writers(run_dir: Path) -> list[Holder | None] | None:
    """Who writes `run_dir` now, for `status`: the one writer, or the workers of a
    multi-worker run, [] when nobody (an entry is None for a holder that has not written
    its name yet). None when that cannot be told from here: a folder that cannot be locked
    through this path, or workers that keep the join lock for longer than NOTE_WAIT_S.

    It probes the locks as a joining worker does, under the join lock, and so disturbs no
    one: a writer or worker that starts meanwhile waits for the join lock, or for a note."""
    layout = RunLayout(run_dir)
    if not layout.lock.exists():  # never locked: nobody writes it (and nothing is made here)
        return []
    try:
        gate = _join_gate(layout, NOTE_WAIT_S)
    except RunFolderBusy:
        return None
    if gate is None:
        return None
    try:
        folder = NotedLock(layout.lock)
        if not folder.try_acquire():
            return [folder.holder()]
        folder.withdraw()  # a note left by a writer that died: it names no one
        folder.release()
        working: list[Holder | None] = []
        for path in sorted(layout.worker_locks.glob("*.lock")):
            presence = NotedLock(path)
            if presence.try_acquire():
                presence.release()  # a dead worker's: the next writer deletes it
            else:
                working.append(presence.holder())
        return working
    finally:
        gate.release()


def _join_gate(layout: RunLayout, wait: float) -> NotedLock | None:
    """The join lock, taken within `wait` seconds; RunFolderBusy when it stays taken. None
    when the folder cannot be locked from here (a read-only mount): nobody writes it either."""
    gate = NotedLock(layout.join_lock)
    try:
        joining = gate.try_acquire(wait=wait)
    except OSError as error:
        if error.errno not in READ_ONLY:
            raise
        _unlocked(layout, error)
        return None
    if not joining:
        raise RunFolderBusy(
            f"{layout.root}: {layout.join_lock} stayed locked for {wait:.0f} s while workers "
            "joined: check that no process hangs holding it, then run this command again"
        )
    return gate


def _refuse_if_writer(layout: RunLayout) -> None:
    """Under the join lock: RunFolderBusy when the one writer holds the folder lock."""
    folder = NotedLock(layout.lock)
    if not folder.try_acquire():
        raise RunFolderBusy(_busy_message(layout.root, describe(folder.holder())))
    folder.withdraw()  # a note left by a writer that died: it names no one
    folder.release()


def _busy_message(run_dir: Path, who: str, wait: str = "wait for it to finish") -> str:
    return (
        f"{run_dir} is in use by {who}; one process writes a run folder at a time: "
        f"{wait} (or stop it), then run this command again"
    )


def _unlocked(layout: RunLayout, error: OSError) -> None:
    log.info(
        "%s cannot be locked from here (%s): going on without the one-writer check, as "
        "nothing can write the folder through this path either",
        layout.root,
        error.strerror or error,
    )
