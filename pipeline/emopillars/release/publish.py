"""`emopillars publish`: check a finished run, then put its dataset on the Hugging Face Hub.

The order keeps the Hub page honest: the data files go first, with `upload_folder` (resumable;
a big dataset may land as several commits), then README.md, provenance.json, quality.json and
the figures in one final commit, so the card never describes data that is not there. Files the
repo already holds with the same content are not sent again: publishing the same run twice
uploads nothing new.
"""

from __future__ import annotations

import logging
import re
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from huggingface_hub import constants
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from emopillars.config import ConfigError, describe
from emopillars.dataset.assemble import CONFIGS
from emopillars.dataset.card import choose_license, render_card
from emopillars.dataset.measured import read_attached
from emopillars.dataset.report import QUALITY_FILE
from emopillars.release.checks import DataFile, ReleaseSummary, check_release
from emopillars.release.hub import (
    DEFAULT_TIMEOUT_S,
    HubClient,
    HubRepo,
    RemoteFile,
    find_token,
    hub_api,
    require_token,
)
from emopillars.release.provenance import build_provenance

log = logging.getLogger("emopillars")

CARD_FILE = "README.md"
PROVENANCE_FILE = "provenance.json"
DEFAULT_BRANCH = "main"
DATA_FOLDERS = frozenset(config.name for config in CONFIGS)
# The Hub's naming rule for owners and repos: letters, digits, '-', '_', '.', at most 96,
# neither starting nor ending with '-' or '.', and no '--' or '..'.
HUB_NAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?")
# The shape of the Hub's license ids (apache-2.0, cc-by-sa-4.0, openrail++, other): the card's
# metadata goes in the final commit, after the data, so a malformed one must stop us first.
LICENSE_ID = re.compile(r"[a-z0-9][a-z0-9.+-]{0,63}")


class PublishOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    repo_id: str
    private: bool = False  # a new repo is created private; an existing public one refused
    revision: str | None = None  # a branch, created when missing; None: the default branch
    license: str | None = None  # None: the run config's, else the corpus's when known
    dry_run: Path | None = None  # write the tree here instead of uploading it
    message: str | None = None
    timeout_s: float = Field(DEFAULT_TIMEOUT_S, gt=0)  # per Hub request, then it is retried

    @field_validator("repo_id")
    @classmethod
    def _owner_and_name(cls, value: str) -> str:
        parts = value.split("/")
        if len(parts) != 2 or not all(HUB_NAME.fullmatch(part) for part in parts):
            raise ValueError(f"{value!r} is not OWNER/NAME (e.g. alice/emo-pillars)")
        if "--" in value or ".." in value:
            raise ValueError(f"{value!r}: the Hub allows no '--' or '..' in names")
        return value

    @field_validator("license")
    @classmethod
    def _license_id(cls, value: str | None) -> str | None:
        if value is not None and not LICENSE_ID.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a license id: lower case, as the Hub lists them "
                "(cc-by-4.0, apache-2.0, mit, other)"
            )
        return value


def publish_options(**values: Any) -> PublishOptions:
    """Options from CLI values; None values are left at their defaults."""
    try:
        return PublishOptions.model_validate(
            {key: value for key, value in values.items() if value is not None}
        )
    except ValidationError as error:
        raise ConfigError(f"invalid publish options: {describe(error)}") from None


@dataclass(frozen=True)
class UploadTree:
    """Exactly what goes to the repo: the data files as they are in the run's dataset
    folder, then quality.json and the figures as they are there, and the card and the
    provenance, rendered for this target."""

    dataset_dir: Path
    data: tuple[DataFile, ...]
    final: dict[str, bytes]  # committed last, in one commit
    warnings: tuple[str, ...]

    @property
    def paths(self) -> list[str]:
        return [file.path_in_repo for file in self.data] + list(self.final)

    def write(self, folder: Path) -> None:
        """The dry run: the tree as it would be uploaded, in an empty or new folder."""
        if folder.exists() and any(folder.iterdir()):
            raise ConfigError(f"--dry-run folder {folder} is not empty: name a new folder")
        for file in self.data:
            target = folder / file.path_in_repo
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file.local, target)
        for path, content in self.final.items():
            (folder / path).parent.mkdir(parents=True, exist_ok=True)  # figures/
            (folder / path).write_bytes(content)


@dataclass(frozen=True)
class PublishResult:
    repo_id: str
    url: str
    counts: dict[str, dict[str, int]]
    tree: tuple[str, ...]  # every path of the uploaded (or staged) tree
    staged_to: Path | None = None  # the dry run's folder; nothing was uploaded
    created_repo: bool = False
    uploaded: tuple[str, ...] = ()  # data files sent in this call
    unchanged: tuple[str, ...] = ()  # data files the repo already held with this content
    deleted: tuple[str, ...] = ()  # data files of an earlier publish that this one replaces
    card_committed: bool = False
    warnings: tuple[str, ...] = ()


def publish(
    run_dir: Path, options: PublishOptions, client: HubClient | None = None
) -> PublishResult:
    """Check the run, then upload what the repo lacks: data files, then card and provenance.

    `client` replaces the real Hub (tests pass a fake API)."""
    if options.dry_run is not None and options.dry_run.resolve().is_relative_to(run_dir.resolve()):
        # Files added to a run folder after assembly make its dataset stale.
        raise ConfigError(
            f"--dry-run folder {options.dry_run} is inside the run folder {run_dir}: "
            "name a folder outside it"
        )
    summary = check_release(run_dir)
    token = find_token()  # None is fine for a dry run, which contacts nothing
    # The token goes into the tree only to be redacted, should a config value hold it.
    tree = build_tree(summary, options, secrets=(token,) if token else ())
    for warning in tree.warnings:
        log.warning("warning: %s", warning)
    result = PublishResult(
        repo_id=options.repo_id,
        url=_repo_url(options),
        counts=summary.counts,
        tree=tuple(tree.paths),
        warnings=tree.warnings,
    )
    if options.dry_run is not None:
        tree.write(options.dry_run)
        return replace(result, staged_to=options.dry_run)

    client = client or HubClient(api=hub_api(options.timeout_s))
    repo = HubRepo(client, require_token(token), options.repo_id, options.revision)
    created = repo.ensure_exists(options.private)
    remote = repo.files()
    changed = [file for file in tree.data if not _holds(remote, file.path_in_repo, file.local)]
    stale = sorted(set(filter(_is_data_file, remote)) - set(tree.paths))
    message = options.message or f"Publish emopillars run {summary.run_dir.resolve().name}"
    if changed:
        log.info("uploading %d data files to %s", len(changed), options.repo_id)
        repo.upload_folder(
            tree.dataset_dir, [file.path_in_repo for file in changed], f"{message}: data files"
        )
    # The final commit goes whenever anything changed: the provenance lists the data files'
    # hashes, so new data always comes with a new card and provenance.
    commit_final = bool(changed or stale) or any(
        not _holds(remote, path, content) for path, content in tree.final.items()
    )
    if commit_final:
        log.info("committing %s", ", ".join([*tree.final, *(f"deletion of {s}" for s in stale)]))
        repo.commit(tree.final, stale, f"{message}: dataset card and provenance")
    elif not changed:
        log.info("%s already holds this run: nothing to upload", options.repo_id)
    return replace(
        result,
        created_repo=created,
        uploaded=tuple(file.path_in_repo for file in changed),
        unchanged=tuple(file.path_in_repo for file in tree.data if file not in changed),
        deleted=tuple(stale),
        card_committed=commit_final,
    )


def build_tree(
    summary: ReleaseSummary, options: PublishOptions, secrets: tuple[str, ...] = ()
) -> UploadTree:
    config = summary.run.config
    licensing = choose_license(options.license or summary.run.license, config)
    card = render_card(
        counts=summary.counts,
        label_counts=summary.label_counts,
        totals=summary.totals,
        run=summary.run,
        license_id=licensing.license_id,
        features=summary.features,
        quality=summary.quality,
        repo_id=options.repo_id,
        measured=read_attached(summary.run_dir),
    )
    provenance = build_provenance(
        summary,
        repo_id=options.repo_id,
        revision=options.revision or DEFAULT_BRANCH,
        license_id=licensing.license_id,
        secrets=secrets,
    )
    # The report and its figures go with the card that shows them, in the final commit.
    measured = [QUALITY_FILE, *summary.quality.figures]
    return UploadTree(
        dataset_dir=summary.dataset_dir,
        data=summary.files,
        final={
            **{path: (summary.dataset_dir / path).read_bytes() for path in measured},
            CARD_FILE: card.encode("utf-8"),
            PROVENANCE_FILE: provenance.to_json().encode("utf-8"),
        },
        warnings=(licensing.warning,) if licensing.warning else (),
    )


def _holds(remote: dict[str, RemoteFile], path: str, content: bytes | Path) -> bool:
    file = remote.get(path)
    return file is not None and file.holds_same_content(content)


def _is_data_file(path: str) -> bool:
    # Only what an earlier publish put there; other files of the repo are the owner's.
    return path.split("/")[0] in DATA_FOLDERS and path.endswith(".parquet")


def _repo_url(options: PublishOptions) -> str:
    url = f"{constants.ENDPOINT}/datasets/{options.repo_id}"
    return f"{url}/tree/{options.revision}" if options.revision else url
