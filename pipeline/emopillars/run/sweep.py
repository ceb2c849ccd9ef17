"""Sweep what interrupted writes leave in a run folder.

A durable write (run/storage.py) goes to a hidden `.NAME.XXXXXXXX.tmp` file that is renamed
into place when complete; a kill between the two leaves the temporary file behind, forever
unless someone removes it. Likewise `dataset.partial/`, the staging folder of an interrupted
assembly. Only the folder's exclusive holder (run/lock.py) may sweep: while workers of a
multi-worker run are at work, any of these files may be a write in progress.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from emopillars.run.layout import RunLayout

log = logging.getLogger("emopillars")


def is_temporary(name: str) -> bool:
    """The name of an atomic write's temporary file: `.{name}.`, a part no other write
    uses, `.tmp`."""
    return name.startswith(".") and name.endswith(".tmp")


def sweep_temporaries(layout: RunLayout) -> int:
    """Delete every temporary file of interrupted writes under the run folder, and an
    interrupted assembly's staging folder; return how many were deleted. Housekeeping: what
    cannot be deleted is logged and left."""
    swept = 0
    for folder, _, names in os.walk(layout.root):
        for name in names:
            if not is_temporary(name):
                continue
            try:
                (Path(folder) / name).unlink(missing_ok=True)
                swept += 1
            except OSError as error:
                log.warning("could not remove the stale temporary file %s: %s", name, error)
    staging = layout.dataset_staging
    if staging.exists():
        try:
            shutil.rmtree(staging)
            swept += 1
        except OSError as error:
            log.warning("could not remove %s, left by an interrupted assembly: %s", staging, error)
    if swept:
        log.info("removed %d temporary files left in %s by interrupted writes", swept, layout.root)
    return swept
