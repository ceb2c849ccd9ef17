"""The exit codes of every emopillars command, defined once."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1  # the work failed: fix the cause and rerun (finished shards are kept); also a
    # reader that closed stdout before all of it was delivered (`... --json | head -1`)
    USAGE = 2  # nothing was attempted: the command, config or environment must change (argparse's)
    # Stopped by a signal: 128 + its number, as a shell reports a process that a signal ends
    # (finished shards are kept).
    INTERRUPTED = 130  # SIGINT, Ctrl-C
    TERMINATED = 143  # SIGTERM: a cancelled or preempted job (scancel, kill, docker stop)
