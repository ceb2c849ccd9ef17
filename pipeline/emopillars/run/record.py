"""run.json: what a run is — its config, its engine and the prompt files it used.

Written by every run before any shard; assembly, the card and provenance read it back, so
what they report is what ran, not what the source tree holds at publish time.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from emopillars.config import RunConfig, describe
from emopillars.engines import EngineInfo
from emopillars.hashing import stable_hash
from emopillars.run.layout import RunLayout
from emopillars.run.storage import CorruptFileError, read_json, write_json

log = logging.getLogger("emopillars")


class RunRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # The run config as JSON, without its execution section: every worker of a run writes
    # the same record. A dict, not a RunConfig, so that a record whose corpus has since
    # moved can still be read.
    config: dict[str, Any]
    engine: EngineInfo
    prompt_version: str
    prompt_files_sha256: dict[str, str]  # every file of the prompt folder the run used

    @property
    def identity(self) -> str:
        """What the plan's workers must agree on: all of the record."""
        return stable_hash(self.model_dump(mode="json"))

    @property
    def seed(self) -> int:
        seed: int = self.config["seed"]
        return seed

    @property
    def license(self) -> str | None:
        license_id: str | None = self.config.get("license")
        return license_id


def write_run_record(layout: RunLayout, record: RunRecord) -> None:
    """Write run.json when its content changes (or it is unreadable): a finished run folder
    stays untouched by a run that has nothing to do."""
    value = record.model_dump(mode="json")
    path = layout.run_record
    try:
        if path.exists() and read_json(path) == value:
            return
    except CorruptFileError as error:
        log.warning("%s is unreadable (%s): rewriting it", path, error.problem)
    write_json(path, value)


def read_run_record(layout: RunLayout) -> RunRecord:
    path = layout.run_record
    if not path.exists():
        raise FileNotFoundError(f"{layout.root} has no run.json: run `emopillars run` on it first")
    try:
        return RunRecord.model_validate(read_json(path))
    except ValidationError as error:
        raise CorruptFileError(
            path, f"not a run record of this emopillars version: {describe(error)}"
        ) from None


def keep_recorded_shard_size(config: RunConfig) -> RunConfig:
    """The config, with the shard size its run folder was started with when it sets none.

    The shard size decides the story shards, and a run's kept answers and journals are filed
    by shard: a folder resumed with another size would be sharded anew and pay the engine
    again for every answer. So a run resumed without --shard-size keeps its own, even one
    started under an older default; a size given explicitly (flag or config file) wins."""
    if "shard_size" in config.model_fields_set:
        return config
    path = RunLayout(config.output_dir).run_record
    if not path.exists():
        return config
    try:
        recorded = read_json(path)["config"]["shard_size"]
    except (CorruptFileError, KeyError, TypeError):
        return config  # an unreadable record is rewritten: nothing to keep
    if type(recorded) is not int or recorded < 1 or recorded == config.shard_size:
        return config
    log.info("%s was started with shard size %d: resuming with it", config.output_dir, recorded)
    return config.model_copy(update={"shard_size": recorded})
