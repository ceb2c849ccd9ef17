"""A stand-in for `huggingface_hub.HfApi`: each dataset repo is a folder, every call is recorded.

It keeps the Hub's behaviour that publishing relies on: a missing repo raises the real
RepositoryNotFoundError, Parquet files are listed with their LFS sha256 and other files with
their git blob id, `upload_folder` honours `allow_patterns`, and a commit lands whole. Queued
errors (the real huggingface_hub and httpx2 exception types) are raised by the next calls.
"""

from __future__ import annotations

import fnmatch
import hashlib
import shutil
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
from huggingface_hub import CommitOperationAdd, CommitOperationDelete
from huggingface_hub.errors import (
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.hf_api import RepoFile, RepoFolder

MAIN = "main"


def http_error(
    kind: type[HfHubHTTPError], status: int, url: str = "https://huggingface.co/api/datasets"
) -> HfHubHTTPError:
    """A huggingface_hub HTTP error as the real client raises it, with its response."""
    response = httpx2.Response(status, request=httpx2.Request("POST", url))
    return kind(f"{status} error for url: {url}", response=response)


@dataclass
class Call:
    method: str
    repo_id: str
    details: dict[str, Any] = field(default_factory=dict)  # never the token


@dataclass
class RepoInfo:
    id: str
    private: bool


class FakeHubApi:
    def __init__(self, root: Path, token: str) -> None:
        self.root = root
        self.expected_token = token
        self.calls: list[Call] = []
        self.private: dict[str, bool] = {}
        self._queued: dict[str, list[BaseException]] = defaultdict(list)

    # -- test controls -------------------------------------------------------------------
    def fail(self, method: str, *errors: BaseException) -> None:
        """The next calls of `method` raise these errors, one per call, in order."""
        self._queued[method].extend(errors)

    def add_repo(self, repo_id: str, private: bool = False) -> None:
        self.private[repo_id] = private
        # The Hub starts every repo with a .gitattributes that puts Parquet in LFS.
        self.put(repo_id, ".gitattributes", b"*.parquet filter=lfs diff=lfs merge=lfs -text\n")

    def put(self, repo_id: str, path: str, content: bytes, revision: str = MAIN) -> None:
        target = self.folder(repo_id, revision) / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)

    def folder(self, repo_id: str, revision: str | None = None) -> Path:
        return self.root / repo_id / (revision or MAIN)

    def methods(self) -> list[str]:
        return [call.method for call in self.calls]

    # -- the HfApi surface that publishing uses ---------------------------------------------
    def repo_info(
        self, repo_id: str, *, repo_type: str | None = None, token: bool | str | None = None
    ) -> RepoInfo:
        self._enter("repo_info", repo_id, token, repo_type)
        if repo_id not in self.private:
            raise http_error(RepositoryNotFoundError, 404)
        return RepoInfo(repo_id, self.private[repo_id])

    def create_repo(
        self,
        repo_id: str,
        *,
        token: str | bool | None = None,
        private: bool | None = None,
        repo_type: str | None = None,
        exist_ok: bool = False,
    ) -> str:
        self._enter("create_repo", repo_id, token, repo_type, private=private)
        self.add_repo(repo_id, bool(private))
        return f"https://huggingface.co/datasets/{repo_id}"

    def create_branch(
        self,
        repo_id: str,
        *,
        branch: str,
        token: bool | str | None = None,
        repo_type: str | None = None,
        exist_ok: bool = False,
    ) -> None:
        self._enter("create_branch", repo_id, token, repo_type, branch=branch)
        if not self.folder(repo_id, branch).exists():
            shutil.copytree(self.folder(repo_id), self.folder(repo_id, branch))

    def list_repo_tree(
        self,
        repo_id: str,
        path_in_repo: str | None = None,
        *,
        recursive: bool = False,
        revision: str | None = None,
        repo_type: str | None = None,
        token: str | bool | None = None,
    ) -> Iterable[RepoFile | RepoFolder]:
        self._enter("list_repo_tree", repo_id, token, repo_type, revision=revision)
        folder = self.folder(repo_id, revision)
        if not folder.exists():
            raise http_error(RevisionNotFoundError, 404)
        return [self._entry(path, folder) for path in sorted(folder.rglob("*")) if path.is_file()]

    def upload_folder(
        self,
        *,
        repo_id: str,
        folder_path: str | Path,
        commit_message: str | None = None,
        token: str | bool | None = None,
        repo_type: str | None = None,
        revision: str | None = None,
        allow_patterns: list[str] | str | None = None,
    ) -> str:
        source = Path(folder_path)
        patterns = [allow_patterns] if isinstance(allow_patterns, str) else allow_patterns
        files = sorted(
            path.relative_to(source).as_posix()
            for path in source.rglob("*")
            if path.is_file()
            and (
                patterns is None
                or any(fnmatch.fnmatch(path.relative_to(source).as_posix(), p) for p in patterns)
            )
        )
        self._enter("upload_folder", repo_id, token, repo_type, files=files, message=commit_message)
        for name in files:
            self.put(repo_id, name, (source / name).read_bytes(), revision or MAIN)
        return "commit-url"

    def create_commit(
        self,
        repo_id: str,
        operations: Iterable[CommitOperationAdd | CommitOperationDelete],
        *,
        commit_message: str,
        token: str | bool | None = None,
        repo_type: str | None = None,
        revision: str | None = None,
    ) -> str:
        operations = list(operations)
        added = [op.path_in_repo for op in operations if isinstance(op, CommitOperationAdd)]
        deleted = [op.path_in_repo for op in operations if isinstance(op, CommitOperationDelete)]
        self._enter(
            "create_commit",
            repo_id,
            token,
            repo_type,
            added=added,
            deleted=deleted,
            message=commit_message,
        )
        for op in operations:
            if isinstance(op, CommitOperationAdd):
                content = op.path_or_fileobj
                assert isinstance(content, bytes)
                self.put(repo_id, op.path_in_repo, content, revision or MAIN)
            else:
                (self.folder(repo_id, revision) / op.path_in_repo).unlink()
        return "commit-url"

    # -- internals -------------------------------------------------------------------------
    def _enter(
        self,
        method: str,
        repo_id: str,
        token: str | bool | None,
        repo_type: str | None,
        **details: Any,
    ) -> None:
        # Checked, never stored: the token must reach every call, and nothing may keep it.
        assert token == self.expected_token, f"{method} did not get the token"
        assert repo_type == "dataset", f"{method} was not told that this is a dataset repo"
        self.calls.append(Call(method, repo_id, details))
        if self._queued[method]:
            raise self._queued[method].pop(0)

    @staticmethod
    def _entry(path: Path, folder: Path) -> RepoFile:
        data = path.read_bytes()
        name = path.relative_to(folder).as_posix()
        lfs = None
        if name.endswith(".parquet"):
            sha256 = hashlib.sha256(data).hexdigest()
            lfs = {"size": len(data), "oid": sha256, "pointerSize": 134}
        # The git object id, as `git hash-object` computes it.
        blob = hashlib.sha1(f"blob {len(data)}".encode() + b"\0" + data).hexdigest()
        # RepoFile's constructor takes the Hub's JSON keys and has no annotations.
        return RepoFile(path=name, size=len(data), oid=blob, lfs=lfs)  # type: ignore[no-untyped-call]
