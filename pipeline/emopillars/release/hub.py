"""The seam to the Hugging Face Hub: the few API calls publishing makes, the token, bounded
retries of transient failures, and messages that say what to do when the Hub says no.

Publishing talks to an `HfApi`-compatible object (`HubApi`); tests inject a fake that writes
to a folder. The token is passed to each call and kept nowhere else: it is never logged,
printed or written, and it is scrubbed from every message this module raises.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx2
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    HfApi,
    get_session,
    get_token,
    set_client_factory,
)
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled, RepositoryNotFoundError
from huggingface_hub.hf_api import RepoFile, RepoFolder
from pydantic import BaseModel, ConfigDict, Field
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt
from tenacity import wait_exponential as exponential

from emopillars.hashing import file_hash
from emopillars.messages import first_line

log = logging.getLogger("emopillars")

REPO_TYPE = "dataset"
TOKENS_PAGE = "https://huggingface.co/settings/tokens"
# What means "try again later": the answers and connection failures that huggingface_hub
# itself retries per request (a refused URL scheme or a bad proxy setting is not among them).
TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})
TRANSIENT_ERRORS = (
    httpx2.TimeoutException,
    httpx2.NetworkError,
    httpx2.RemoteProtocolError,
    ConnectionError,
    TimeoutError,
)

# How long one Hub call waits to connect, or for the next bytes of an answer, before that try
# counts as a network error (and is retried). huggingface_hub itself waits forever, so a proxy
# or firewall that accepts the connection and never answers would hang a publish for good.
DEFAULT_TIMEOUT_S = 60.0
CONNECT_TIMEOUT_S = 10.0

T = TypeVar("T")


class PublishRefused(RuntimeError):
    """Publishing cannot start here: no token, or huggingface_hub is in offline mode."""


class HubError(RuntimeError):
    """The Hub refused or failed a call; the message says which and what to do."""


class HubApi(Protocol):
    """The part of `huggingface_hub.HfApi` that publishing uses."""

    def repo_info(
        self, repo_id: str, *, repo_type: str | None = None, token: bool | str | None = None
    ) -> Any: ...

    def create_repo(
        self,
        repo_id: str,
        *,
        token: str | bool | None = None,
        private: bool | None = None,
        repo_type: str | None = None,
        exist_ok: bool = False,
    ) -> Any: ...

    def create_branch(
        self,
        repo_id: str,
        *,
        branch: str,
        token: bool | str | None = None,
        repo_type: str | None = None,
        exist_ok: bool = False,
    ) -> None: ...

    def list_repo_tree(
        self,
        repo_id: str,
        path_in_repo: str | None = None,
        *,
        recursive: bool = False,
        revision: str | None = None,
        repo_type: str | None = None,
        token: str | bool | None = None,
    ) -> Iterable[RepoFile | RepoFolder]: ...

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
    ) -> Any: ...

    def create_commit(
        self,
        repo_id: str,
        operations: Iterable[CommitOperationAdd | CommitOperationDelete],
        *,
        commit_message: str,
        token: str | bool | None = None,
        repo_type: str | None = None,
        revision: str | None = None,
    ) -> Any: ...


class RetryPolicy(BaseModel):
    """Tries per Hub call for network errors and 429/5xx answers; waits double each time."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    attempts: int = Field(4, ge=1, le=10)
    first_wait_s: float = Field(2.0, ge=0.0)
    max_wait_s: float = Field(30.0, ge=0.0)


def hub_api(timeout_s: float = DEFAULT_TIMEOUT_S, endpoint: str | None = None) -> HfApi:
    """The real Hub API, whose every request gives up after `timeout_s` seconds without an
    answer (a network error, retried like the others)."""
    set_client_factory(_ClientsWithDeadline(get_session(), Deadline(timeout_s)))
    return HfApi(endpoint=endpoint)


@dataclass(frozen=True)
class Deadline:
    """A request hook bounding how long a request waits: huggingface_hub passes `timeout=None`
    (wait forever) on most calls, which overrides any default the client has."""

    timeout_s: float

    def __call__(self, request: httpx2.Request) -> None:
        bound = httpx2.Timeout(self.timeout_s, connect=min(self.timeout_s, CONNECT_TIMEOUT_S))
        asked = request.extensions.get("timeout", {})
        request.extensions["timeout"] = {
            phase: limit if asked.get(phase) is None else min(limit, asked[phase])
            for phase, limit in bound.as_dict().items()
        }


class _ClientsWithDeadline:
    """Makes huggingface_hub's shared HTTP client as its own factory does (its hooks add the
    offline check and request ids), with the deadline added. huggingface_hub may replace the
    client (after an SSL error, in a forked child): the new one gets the deadline too."""

    def __init__(self, model: httpx2.Client, deadline: Deadline) -> None:
        self._hooks = {
            event: [hook for hook in hooks if not isinstance(hook, Deadline)]
            for event, hooks in model.event_hooks.items()
        }
        self._hooks["request"] = [*self._hooks.get("request", []), deadline]
        self._follow_redirects = model.follow_redirects
        self._timeout = model.timeout  # None, as huggingface_hub's: the deadline bounds it

    def __call__(self) -> httpx2.Client:
        return httpx2.Client(
            event_hooks={event: list(hooks) for event, hooks in self._hooks.items()},
            follow_redirects=self._follow_redirects,
            timeout=self._timeout,
        )


@dataclass(frozen=True)
class HubClient:
    """How publishing reaches the Hub: the API object and how patiently to call it."""

    api: HubApi = field(default_factory=hub_api)
    retry: RetryPolicy = field(default_factory=RetryPolicy)


def find_token() -> str | None:
    """HF_TOKEN, else the login stored by `hf auth login` (huggingface_hub's own lookup)."""
    return get_token()


def require_token(token: str | None) -> str:
    """The token, or a refusal that says how to get one."""
    if not token:
        raise PublishRefused(
            "no Hugging Face token: set HF_TOKEN or run `hf auth login` with a token that has "
            f"the write role ({TOKENS_PAGE}); `--dry-run STAGING_DIR` needs no token"
        )
    return token


@dataclass(frozen=True)
class RemoteFile:
    path: str
    blob_id: str  # git object id: how the Hub names a plain file's content
    lfs_sha256: str | None  # sha256 of the content when the Hub keeps the file in LFS/Xet

    def holds_same_content(self, content: bytes | Path) -> bool:
        if self.lfs_sha256 is not None:
            local = (
                file_hash(content)
                if isinstance(content, Path)
                else hashlib.sha256(content).hexdigest()
            )
            return local == self.lfs_sha256
        data = content.read_bytes() if isinstance(content, Path) else content
        return git_blob_id(data) == self.blob_id


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


class HubRepo:
    """One dataset repo at one revision, reached with one token."""

    def __init__(
        self, client: HubClient, token: str, repo_id: str, revision: str | None = None
    ) -> None:
        self._client = client
        self._token = token
        self.repo_id = repo_id
        self.revision = revision

    def __repr__(self) -> str:  # never the token
        return f"HubRepo({self.repo_id!r}, revision={self.revision!r})"

    def ensure_exists(self, private: bool) -> bool:
        """Create the repo (and the branch) when missing; True when the repo was created."""
        api, token = self._client.api, self._token
        created = False
        try:
            info = self._call(
                f"read {self.repo_id}",
                lambda: api.repo_info(self.repo_id, repo_type=REPO_TYPE, token=token),
                passthrough=(RepositoryNotFoundError,),
            )
        except RepositoryNotFoundError:
            self._call(
                f"create the dataset repo {self.repo_id}",
                lambda: api.create_repo(
                    self.repo_id, token=token, private=private, repo_type=REPO_TYPE, exist_ok=True
                ),
            )
            log.info("created the %s dataset repo %s", _visibility(private), self.repo_id)
            created = True
        else:
            if private and not getattr(info, "private", False):
                # Uploading data meant to be private into a public repo cannot be undone.
                raise HubError(
                    f"{self.repo_id} exists and is public, but --private was given: make it "
                    "private in its settings on the Hub, or publish without --private"
                )
        if self.revision is not None:
            branch = self.revision
            self._call(
                f"create the branch {branch} of {self.repo_id}",
                lambda: api.create_branch(
                    self.repo_id, branch=branch, token=token, repo_type=REPO_TYPE, exist_ok=True
                ),
            )
        return created

    def files(self) -> dict[str, RemoteFile]:
        """Every file the repo holds at this revision, with what identifies its content."""
        api, token = self._client.api, self._token
        entries = self._call(
            f"list the files of {self.repo_id}",
            lambda: list(
                api.list_repo_tree(
                    self.repo_id,
                    recursive=True,
                    revision=self.revision,
                    repo_type=REPO_TYPE,
                    token=token,
                )
            ),
        )
        return {
            entry.path: RemoteFile(
                entry.path, entry.blob_id, entry.lfs.sha256 if entry.lfs is not None else None
            )
            for entry in entries
            if isinstance(entry, RepoFile)
        }

    def upload_folder(self, folder: Path, paths: Sequence[str], message: str) -> None:
        """Upload these files of `folder` (resumable; may land as several commits)."""
        api, token = self._client.api, self._token
        self._call(
            f"upload data files to {self.repo_id}",
            lambda: api.upload_folder(
                repo_id=self.repo_id,
                folder_path=folder,
                commit_message=message,
                token=token,
                repo_type=REPO_TYPE,
                revision=self.revision,
                # Exact paths: fnmatch patterns that name one file each.
                allow_patterns=list(paths),
            ),
        )

    def commit(self, additions: dict[str, bytes], deletions: Sequence[str], message: str) -> None:
        """One commit: add these files, delete those, or nothing of it."""
        api, token = self._client.api, self._token
        operations: list[CommitOperationAdd | CommitOperationDelete] = [
            CommitOperationAdd(path_in_repo=path, path_or_fileobj=content)
            for path, content in additions.items()
        ]
        operations += [CommitOperationDelete(path_in_repo=path) for path in deletions]
        self._call(
            f"commit to {self.repo_id}",
            lambda: api.create_commit(
                self.repo_id,
                operations,
                commit_message=message,
                token=token,
                repo_type=REPO_TYPE,
                revision=self.revision,
            ),
        )

    def _call(
        self,
        action: str,
        request: Callable[[], T],
        passthrough: tuple[type[Exception], ...] = (),
    ) -> T:
        """Call with bounded retries; a failure becomes a HubError that says what to do,
        except the `passthrough` errors, which the caller handles."""
        policy = self._client.retry
        retrying = Retrying(
            stop=stop_after_attempt(policy.attempts),
            wait=exponential(multiplier=policy.first_wait_s, max=policy.max_wait_s),
            retry=retry_if_exception(is_transient),
            before_sleep=lambda state: self._log_retry(action, state),
            reraise=True,
        )
        try:
            return retrying(request)
        except passthrough:
            raise
        except Exception as error:
            translated = self._translate(action, error)
            if translated is None:
                raise
            raise translated from error

    def _log_retry(self, action: str, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        log.warning(
            "could not %s (%s); try %d of %d in %.0fs",
            action,
            self._scrub(str(error)),
            state.attempt_number + 1,
            self._client.retry.attempts,
            wait,
        )

    def _translate(self, action: str, error: Exception) -> Exception | None:
        if isinstance(error, OfflineModeIsEnabled):
            return PublishRefused(
                "HF_HUB_OFFLINE=1 is set, so huggingface_hub refuses to contact the Hub: unset "
                "it to publish, or write the tree locally with --dry-run STAGING_DIR"
            )
        status = _status(error)
        owner = self.repo_id.split("/")[0]
        if status == 401:
            return HubError(
                f"the Hub rejected the token (401 Unauthorized) when trying to {action}: it is "
                f"invalid, expired or revoked. Make a token with the write role at {TOKENS_PAGE} "
                "and set HF_TOKEN or run `hf auth login`"
            )
        if status == 403:
            return HubError(
                f"the token may not {action} (403 Forbidden): publishing needs write access to "
                f"{owner}'s repos, that is a token with the write role, or a fine-grained token "
                f"with write access to repos under {owner} ({TOKENS_PAGE})"
            )
        if is_transient(error):
            return HubError(
                f"network error: could not {action} after {self._client.retry.attempts} tries "
                f"({self._scrub(str(error))}). Files already uploaded are kept: run the same "
                "command again to resume"
            )
        if isinstance(error, HfHubHTTPError):
            reason = error.server_message or first_line(error)
            return HubError(f"the Hub refused to {action} ({status}): {self._scrub(reason)}")
        return None  # not a Hub failure: a bug, which must surface with its traceback

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "<token>")


def is_transient(error: BaseException) -> bool:
    """Worth another try: the network failed, or the Hub asked to come back later."""
    if isinstance(error, OfflineModeIsEnabled):  # a ConnectionError that no retry will fix
        return False
    if isinstance(error, HfHubHTTPError):
        return _status(error) in TRANSIENT_STATUS
    return isinstance(error, TRANSIENT_ERRORS)


def _status(error: BaseException) -> int | None:
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def _visibility(private: bool) -> str:
    return "private" if private else "public"
