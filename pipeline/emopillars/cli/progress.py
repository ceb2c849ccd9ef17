"""Progress for people at a terminal: a rich progress line of stage shards done."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from emopillars.run.manifest import ShardMarker


class ShardProgress:
    """Counts (stage, shard) units as the runner reports them; silent when not on a terminal
    (cluster logs get the JSON line per shard instead)."""

    def __init__(self) -> None:
        console = Console(stderr=True)
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TextColumn("{task.completed} stage shards"),
            TimeElapsedColumn(),
            console=console,
            disable=not console.is_terminal,
            transient=True,
        )
        self._task = self._progress.add_task("starting", total=None)

    def __call__(self, stage: str, shard: int, marker: ShardMarker | None) -> None:
        done = "already done" if marker is None else f"{marker.outputs} out, {marker.seconds:.0f}s"
        self._progress.update(self._task, advance=1, description=f"{stage} shard {shard} ({done})")

    def __enter__(self) -> ShardProgress:
        self._progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._progress.stop()
