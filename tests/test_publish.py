"""`emopillars publish`, offline: a fake HfApi that writes to a folder stands in for the Hub,
and the real HfApi is driven up to the point where HF_HUB_OFFLINE=1 stops it."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from importlib.resources import files
from pathlib import Path

import emopillars
import httpx2
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import fake_config, write_corpus
from emopillars.api import run_pipeline
from emopillars.cli import main
from emopillars.release.hub import (
    CONNECT_TIMEOUT_S,
    Deadline,
    HubApi,
    HubClient,
    HubError,
    RetryPolicy,
    git_blob_id,
)
from emopillars.release.hub import (
    hub_api as real_hub_api,
)
from emopillars.release.provenance import REDACTED, redact
from emopillars.release.publish import PublishOptions, publish
from emopillars.resources import prompts_dir
from emopillars.run.storage import write_table
from emopillars.stages.taxonomy import LABELS
from fake_hub import FakeHubApi, http_error
from huggingface_hub import DatasetCard, HfApi, get_session, set_client_factory
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled
from huggingface_hub.utils import _http as huggingface_http

TOKEN = "hf_TESTTOKEN_do_not_leak_123"
REPO = "alice/emo-pillars"
DATA_FILES = [
    f"{config}/{split}-00000-of-00001.parquet"
    for config in ("context_less", "context_aware")
    for split in ("train", "validation", "test")
]

# The quality report and its figures, committed with the card that shows them.
QUALITY_FILES = [
    "quality.json",
    *(f"figures/{name}.png" for name in ("label_distribution", "intended_vs_labels",
                                           "intensity", "label_cooccurrence", "rejects")),
]  # fmt: skip


@pytest.fixture
def hub_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeHubApi:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    return FakeHubApi(tmp_path / "hub", TOKEN)


@pytest.fixture
def hub(hub_api: FakeHubApi) -> HubClient:
    return HubClient(api=hub_api, retry=RetryPolicy(attempts=3, first_wait_s=0, max_wait_s=0))


def tree(folder: Path) -> dict[str, bytes]:
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def publish_args(run_dir: Path, *extra: str) -> list[str]:
    return ["publish", str(run_dir), "--repo-id", REPO, *extra]


# -- the upload ----------------------------------------------------------------------------


def test_data_go_first_with_upload_folder_and_card_last_in_one_commit(
    run_dir: Path, hub: HubClient, hub_api: FakeHubApi, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(publish_args(run_dir), hub=hub) == 0
    assert hub_api.methods() == [
        "repo_info",
        "create_repo",
        "list_repo_tree",
        "upload_folder",
        "create_commit",
    ]
    upload, commit = hub_api.calls[3], hub_api.calls[4]
    assert sorted(upload.details["files"]) == sorted(DATA_FILES)
    assert commit.details["added"] == [*QUALITY_FILES, "README.md", "provenance.json"]
    assert commit.details["deleted"] == []
    assert hub_api.calls[1].details["private"] is False
    assert sorted(tree(hub_api.folder(REPO))) == sorted(
        [".gitattributes", "README.md", "provenance.json", *QUALITY_FILES, *DATA_FILES]
    )
    out = capsys.readouterr().out
    assert f"published to https://huggingface.co/datasets/{REPO} (repo created)" in out
    assert "6 data files uploaded, 0 already there" in out


def test_uploaded_tree_loads_with_the_declared_features(
    run_dir: Path, hub: HubClient, hub_api: FakeHubApi
) -> None:
    from datasets import ClassLabel, List, Value, load_dataset

    assert main(publish_args(run_dir), hub=hub) == 0
    repo = hub_api.folder(REPO)
    provenance = json.loads((repo / "provenance.json").read_text())
    rows = {file["path"]: file["rows"] for file in provenance["files"]}
    for config in ("context_less", "context_aware"):
        data = load_dataset(str(repo), config)
        assert set(data) == {"train", "validation", "test"}
        for split in data:
            assert data[split].num_rows == rows[f"{config}/{split}-00000-of-00001.parquet"] > 0
        features = data["train"].features
        assert features["labels"] == List(ClassLabel(names=list(LABELS)))
        assert features["scores"] == List(Value("float64"))
    assert (
        load_dataset(str(repo))["train"].column_names
        == load_dataset(str(run_dir / "dataset"), "context_less")["train"].column_names
    )  # context_less is the default config


def test_card_parses_and_its_metadata_validates(
    run_dir: Path, hub: HubClient, hub_api: FakeHubApi
) -> None:
    from datasets import load_dataset
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs

    assert main(publish_args(run_dir, "--license", "cc-by-4.0"), hub=hub) == 0
    repo = hub_api.folder(REPO)
    card = DatasetCard.load(repo / "README.md")
    data = card.data
    assert data.license == "cc-by-4.0"
    assert data.task_categories == ["text-classification"]
    assert data.task_ids == ["multi-label-classification"]
    assert data.annotations_creators == data.language_creators == ["machine-generated"]
    assert data.language == ["en"] and data.size_categories == ["n<1K"]
    assert data.tags == ["emotion", "synthetic", "goemotions"] and data.pretty_name
    # The value lists `datasets` ships for card metadata.
    resources = files("datasets.utils") / "resources"
    assert set(data.size_categories) <= set(
        json.loads((resources / "size_categories.json").read_text())
    )
    creators = json.loads((resources / "creators.json").read_text())
    assert set(data.annotations_creators) <= set(creators["annotations"])
    configs = MetadataConfigs.from_dataset_card_data(data)
    assert configs.get_default_config_name() == "context_less"
    assert set(configs) == {"context_less", "context_aware"}
    declared = DatasetInfosDict.from_dataset_card_data(data)
    for name in configs:
        assert declared[name].features == load_dataset(str(repo), name)["train"].features
    for heading in ("How it was made", "Size", "Label distribution", "Rejected answers",
                    "Known limitations", "Use", "License", "Citation"):  # fmt: skip
        assert f"## {heading}" in card.text
    assert f'load_dataset("{REPO}", "context_less")' in card.text
    assert "Teacher model: `fake`" in card.text and "temperature 0.0" in card.text


def test_second_publish_of_the_same_run_uploads_nothing_new(
    run_dir: Path, hub: HubClient, hub_api: FakeHubApi, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(publish_args(run_dir), hub=hub) == 0
    before = tree(hub_api.folder(REPO))
    hub_api.calls.clear()
    capsys.readouterr()
    assert main(publish_args(run_dir), hub=hub) == 0
    assert hub_api.methods() == ["repo_info", "list_repo_tree"]
    assert tree(hub_api.folder(REPO)) == before
    assert "nothing new to upload" in capsys.readouterr().out


def test_a_new_license_commits_only_card_and_provenance(
    run_dir: Path, hub: HubClient, hub_api: FakeHubApi
) -> None:
    assert main(publish_args(run_dir), hub=hub) == 0
    hub_api.calls.clear()
    assert main(publish_args(run_dir, "--license", "cc-by-4.0"), hub=hub) == 0
    assert hub_api.methods() == ["repo_info", "list_repo_tree", "create_commit"]
    assert json.loads((hub_api.folder(REPO) / "provenance.json").read_text())["license"] == (
        "cc-by-4.0"
    )


def test_republish_removes_data_files_of_an_earlier_layout_and_keeps_other_files(
    run_dir: Path, hub: HubClient, hub_api: FakeHubApi
) -> None:
    hub_api.add_repo(REPO)
    hub_api.put(REPO, "context_less/train-00001-of-00002.parquet", b"old rows")
    hub_api.put(REPO, "notes.md", b"the owner's notes")
    assert main(publish_args(run_dir), hub=hub) == 0
    commit = hub_api.calls[-1]
    assert commit.details["deleted"] == ["context_less/train-00001-of-00002.parquet"]
    files = tree(hub_api.folder(REPO))
    assert "notes.md" in files and "context_less/train-00001-of-00002.parquet" not in files


def test_revision_publishes_to_a_new_branch(
    run_dir: Path, hub: HubClient, hub_api: FakeHubApi, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(publish_args(run_dir, "--revision", "v1", "--message", "First cut"), hub=hub) == 0
    assert hub_api.methods()[:3] == ["repo_info", "create_repo", "create_branch"]
    assert "README.md" in tree(hub_api.folder(REPO, "v1"))
    assert "README.md" not in tree(hub_api.folder(REPO))
    assert hub_api.calls[-1].details["message"] == "First cut: dataset card and provenance"
    assert f"datasets/{REPO}/tree/v1" in capsys.readouterr().out


def test_dry_run_writes_exactly_the_tree_that_is_uploaded(
    run_dir: Path, hub: HubClient, hub_api: FakeHubApi, tmp_path: Path
) -> None:
    staging = tmp_path / "staging"
    assert main(publish_args(run_dir, "--dry-run", str(staging)), hub=hub) == 0
    assert hub_api.calls == []
    assert main(publish_args(run_dir), hub=hub) == 0
    uploaded = tree(hub_api.folder(REPO))
    uploaded.pop(".gitattributes")  # the Hub's own file of a new repo
    assert tree(staging) == uploaded


def test_dry_run_needs_no_token_and_refuses_a_folder_in_use(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    staging = tmp_path / "staging"
    assert main(publish_args(run_dir, "--dry-run", str(staging))) == 0
    assert "nothing was uploaded" in capsys.readouterr().out
    assert main(publish_args(run_dir, "--dry-run", str(staging))) == 2
    assert "is not empty" in capsys.readouterr().err


def test_a_dry_run_into_the_run_folder_is_refused_and_leaves_the_dataset_current(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = tree(run_dir)
    assert main(publish_args(run_dir, "--dry-run", str(run_dir / "dataset" / "stage"))) == 2
    assert "is inside the run folder" in capsys.readouterr().err
    assert tree(run_dir) == before


# -- provenance and the token --------------------------------------------------------------


def test_provenance_records_what_made_the_data(
    run_dir: Path, hub: HubClient, hub_api: FakeHubApi
) -> None:
    assert main(publish_args(run_dir), hub=hub) == 0
    repo = hub_api.folder(REPO)
    provenance = json.loads((repo / "provenance.json").read_text())
    run = json.loads((run_dir / "run.json").read_text())
    assert provenance["pipeline_version"] == emopillars.__version__
    assert provenance["run_config"] == run["config"]  # nothing secret in it to redact
    assert provenance["model"] == {"id": "fake", "revision": None}
    labels_prompt = prompts_dir() / "v1" / "labels.txt"
    assert (
        provenance["prompt_files_sha256"]["labels.txt"]
        == hashlib.sha256(labels_prompt.read_bytes()).hexdigest()
    )
    assert set(provenance["manifest"]) == {"actors", "utterances", "labels", "contexts", "rewrites"}
    assert provenance["manifest"]["labels"]["shards_done"] == 3
    assert provenance["corpus"]["stories"] == 6
    assert len(provenance["corpus"]["stories_sha256"]) == 64
    for file in provenance["files"]:
        assert hashlib.sha256((repo / file["path"]).read_bytes()).hexdigest() == file["sha256"]
    times = provenance["timestamps"]
    assert times["first_shard_started_at"] <= times["last_shard_finished_at"]


def test_provenance_names_the_prompt_files_the_run_used_not_the_ones_there_now(
    tmp_path: Path, hub: HubClient, hub_api: FakeHubApi
) -> None:
    own_prompts = Path(shutil.copytree(prompts_dir(), tmp_path / "prompts"))
    labels_prompt = own_prompts / "v1" / "labels.txt"
    used = hashlib.sha256(labels_prompt.read_bytes()).hexdigest()
    config = fake_config(write_corpus(tmp_path / "stories.jsonl"), tmp_path / "run",
                         prompts_dir=own_prompts)  # fmt: skip
    run_pipeline(config)
    labels_prompt.write_text(labels_prompt.read_text() + "\nEdited after the run.\n")

    assert main(publish_args(config.output_dir), hub=hub) == 0
    provenance = json.loads((hub_api.folder(REPO) / "provenance.json").read_text())
    assert provenance["prompt_files_sha256"]["labels.txt"] == used


def test_secrets_are_redacted_and_env_variable_names_kept() -> None:
    config = {
        "server": {
            "api_key": "sk-live-1",
            "api_key_env": "MY_KEY",
            "base_url": "https://user:pw@host/v1",
        },
        "hf_token": None,
        "auth-token": "abc",
        "max_tokens": {"labels": 120},
        "note": f"made with {TOKEN}",
    }
    assert redact(config, (TOKEN,)) == {
        "server": {
            "api_key": REDACTED,
            "api_key_env": "MY_KEY",
            "base_url": f"https://{REDACTED}@host/v1",
        },
        "hf_token": None,
        "auth-token": REDACTED,
        "max_tokens": {"labels": 120},
        "note": f"made with {REDACTED}",
    }


def test_the_token_is_never_printed_logged_or_written(
    run_dir: Path,
    hub: HubClient,
    hub_api: FakeHubApi,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    hub_api.fail("list_repo_tree", httpx2.ConnectError(f"refused (token {TOKEN}?)"))
    assert main(publish_args(run_dir, "--dry-run", str(tmp_path / "staging")), hub=hub) == 0
    assert main(publish_args(run_dir), hub=hub) == 0
    hub_api.fail("repo_info", http_error(HfHubHTTPError, 401))
    assert main(publish_args(run_dir), hub=hub) == 1
    captured = capsys.readouterr()
    assert "try 2 of 3" in caplog.text  # the retry was logged, with the error scrubbed
    for text in (captured.out, captured.err, caplog.text):
        assert TOKEN not in text
    files = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert len(files) > 40  # run folder, staging tree, repo
    assert not [path for path in files if TOKEN.encode() in path.read_bytes()]


# -- checks before anything leaves the machine ---------------------------------------------


def _rewrite(path: Path, change: Callable[[pa.Table], pa.Table], page_index: bool = True) -> None:
    table = change(pq.read_table(path))
    if page_index:
        write_table(path, table)
    else:
        pq.write_table(table, path, write_page_index=False)


def _duplicate_first_row(table: pa.Table) -> pa.Table:
    return pa.concat_tables([table, table.slice(0, 1)])


def _train_row_into(split: str) -> Callable[[Path], None]:
    def move(dataset: Path) -> None:
        train = pq.read_table(dataset / "context_aware/train-00000-of-00001.parquet")
        row = train.slice(0, 1).set_column(0, "id", pa.array(["moved"]))
        target = dataset / f"context_aware/{split}-00000-of-00001.parquet"
        _rewrite(target, lambda table: pa.concat_tables([table, row]))

    return move


BROKEN_RUNS: dict[str, tuple[Callable[[Path], object], str]] = {
    "stage not done": (
        lambda run: (run / "manifest/labels/shard-00001.json").unlink(),
        "stage labels/shard-00001 is not done",
    ),
    "stage output changed": (
        lambda run: (run / "rewrites/shard-00000.parquet").write_bytes(b"changed"),
        "rewrites/shard-00000.parquet changed after it was marked done",
    ),
    "config missing": (
        lambda run: shutil.rmtree(run / "dataset/context_aware"),
        "config context_aware is missing",
    ),
    "split missing": (
        lambda run: (run / "dataset/context_less/test-00000-of-00001.parquet").unlink(),
        "config context_less has no test split",
    ),
    "empty split": (
        lambda run: _rewrite(
            run / "dataset/context_less/validation-00000-of-00001.parquet",
            lambda table: table.slice(0, 0),
        ),
        "the validation split has no rows",
    ),
    "duplicate ids": (
        lambda run: _rewrite(
            run / "dataset/context_less/train-00000-of-00001.parquet", _duplicate_first_row
        ),
        "context_less: 1 ids occur more than once",
    ),
    "story in two splits": (
        lambda run: _train_row_into("test")(run / "dataset"),
        "context_aware: 1 stories are in more than one split",
    ),
    "wrong schema": (
        lambda run: _rewrite(
            run / "dataset/context_less/train-00000-of-00001.parquet",
            lambda table: table.drop_columns(["scores"]),
        ),
        "context_less/train-00000-of-00001.parquet: columns",
    ),
    "no page index": (
        lambda run: _rewrite(
            run / "dataset/context_aware/test-00000-of-00001.parquet",
            lambda table: table,
            page_index=False,
        ),
        "row group 0 has no page index",
    ),
    "stray file": (
        lambda run: (run / "dataset/context_less/extra.csv").write_text("a,b\n"),
        "unexpected file extra.csv",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN_RUNS))
def test_a_run_that_fails_a_check_is_named_and_never_reaches_the_hub(
    case: str,
    run_dir: Path,
    hub: HubClient,
    hub_api: FakeHubApi,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    breakage, message = BROKEN_RUNS[case]
    breakage(run_dir)
    assert main(publish_args(run_dir), hub=hub) == 1
    assert message in capsys.readouterr().err
    assert hub_api.calls == []
    assert main(publish_args(run_dir, "--dry-run", str(tmp_path / "staging")), hub=hub) == 1
    assert not (tmp_path / "staging").exists()


# -- what the Hub or the environment can say -----------------------------------------------


def test_a_missing_repo_is_created_private_when_asked(
    run_dir: Path, hub: HubClient, hub_api: FakeHubApi
) -> None:
    assert main(publish_args(run_dir, "--private"), hub=hub) == 0
    assert hub_api.calls[1].method == "create_repo"
    assert hub_api.calls[1].details["private"] is True
    assert hub_api.private[REPO] is True


def test_private_is_refused_for_an_existing_public_repo(
    run_dir: Path, hub: HubClient, hub_api: FakeHubApi, capsys: pytest.CaptureFixture[str]
) -> None:
    hub_api.add_repo(REPO, private=False)
    assert main(publish_args(run_dir, "--private"), hub=hub) == 1
    assert "exists and is public, but --private was given" in capsys.readouterr().err
    assert hub_api.methods() == ["repo_info"]


def test_transient_network_errors_are_retried(
    run_dir: Path,
    hub: HubClient,
    hub_api: FakeHubApi,
    capsys: pytest.CaptureFixture[str],
) -> None:
    hub_api.fail("upload_folder", httpx2.ReadTimeout("timed out"), http_error(HfHubHTTPError, 503))
    assert main(publish_args(run_dir), hub=hub) == 0
    assert hub_api.methods().count("upload_folder") == 3
    assert "6 data files uploaded" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("method", "error", "code", "message"),
    [
        (
            "repo_info",
            http_error(HfHubHTTPError, 401),
            1,
            "the Hub rejected the token (401 Unauthorized) when trying to read",
        ),
        (
            "create_repo",
            http_error(HfHubHTTPError, 403),
            1,
            f"the token may not create the dataset repo {REPO} (403 Forbidden): publishing "
            "needs write access to alice's repos, that is a token with the write role",
        ),
        (
            "upload_folder",
            http_error(HfHubHTTPError, 403),
            1,
            f"the token may not upload data files to {REPO} (403 Forbidden)",
        ),
        (
            "list_repo_tree",
            httpx2.ConnectError("connection refused"),
            1,
            f"network error: could not list the files of {REPO} after 3 tries "
            "(connection refused). Files already uploaded are kept",
        ),
        (
            "create_commit",
            http_error(HfHubHTTPError, 400),
            1,
            f"the Hub refused to commit to {REPO} (400)",
        ),
        (
            "repo_info",
            OfflineModeIsEnabled("offline"),
            2,
            "HF_HUB_OFFLINE=1 is set, so huggingface_hub refuses to contact the Hub",
        ),
    ],
    ids=["401", "403-create", "403-upload", "network", "400-commit", "offline"],
)
def test_hub_errors_give_a_message_and_an_exit_code(
    method: str,
    error: BaseException,
    code: int,
    message: str,
    run_dir: Path,
    hub: HubClient,
    hub_api: FakeHubApi,
    capsys: pytest.CaptureFixture[str],
) -> None:
    hub_api.fail(method, *[error] * 3)  # as often as the retry policy tries
    assert main(publish_args(run_dir), hub=hub) == code
    assert message in capsys.readouterr().err
    if method != "create_commit":  # nothing describes data that did not arrive
        assert "create_commit" not in hub_api.methods()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--repo-id", "no-owner"], "is not OWNER/NAME"),
        (["--repo-id", "alice/bad--name"], "no '--' or '..'"),
        (["--repo-id", REPO, "--license", "not a license!"], "'not a license!' is not a license"),
        (["--repo-id", REPO, "--license", "MIT"], "'MIT' is not a license id: lower case"),
        (["--repo-id", REPO, "--timeout-s", "0"], "timeout_s: Input should be greater than 0"),
    ],
)
def test_bad_options_are_usage_errors(
    args: list[str], message: str, run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["publish", str(run_dir), *args]) == 2
    assert message in capsys.readouterr().err


def test_a_folder_that_is_no_run_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(publish_args(tmp_path)) == 2
    assert "not an emopillars run folder" in capsys.readouterr().err


def test_a_share_alike_corpus_sets_the_default_and_warns_on_other_licenses(
    run_dir: Path,
    tmp_path: Path,
    hub: HubClient,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    run_file = run_dir / "run.json"
    run = json.loads(run_file.read_text())
    run["config"]["corpus"] = "/data/wikiplots/plots.jsonl"
    run["config"]["corpus_license"] = "cc-by-sa-4.0"
    run_file.write_text(json.dumps(run))
    assert main(publish_args(run_dir, "--dry-run", str(tmp_path / "a")), hub=hub) == 0
    assert DatasetCard.load(tmp_path / "a" / "README.md").data.license == "cc-by-sa-4.0"
    assert "share-alike" not in caplog.text
    assert main(publish_args(run_dir, "--dry-run", str(tmp_path / "b"), "--license", "mit")) == 0
    warning = "is cc-by-sa-4.0 (share-alike"
    assert warning in caplog.text
    assert warning in (tmp_path / "b" / "README.md").read_text()


# -- the real HfApi ------------------------------------------------------------------------


@pytest.fixture
def restore_hub_session() -> Iterator[None]:
    yield
    set_client_factory(huggingface_http.default_client_factory)


def test_a_hub_that_accepts_and_never_answers_is_a_network_error_not_a_hang(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch, restore_hub_session: None
) -> None:
    # A stalled proxy or firewall: the connection is taken (the kernel's backlog), no answer.
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        client = HubClient(
            api=real_hub_api(timeout_s=0.5, endpoint=endpoint),
            retry=RetryPolicy(attempts=2, first_wait_s=0, max_wait_s=0),
        )
        failures: list[BaseException] = []

        def publishing() -> None:
            try:
                publish(run_dir, PublishOptions(repo_id=REPO), client)
            except BaseException as error:
                failures.append(error)

        worker = threading.Thread(target=publishing, daemon=True)  # a hang must not hang pytest
        worker.start()
        worker.join(timeout=30)  # two tries of 0.5 s, not forever
    assert not worker.is_alive(), "publish still waits for a Hub that never answers"
    assert len(failures) == 1 and isinstance(failures[0], HubError)
    assert f"network error: could not read {REPO} after 2 tries" in str(failures[0])


def test_the_hub_deadline_bounds_what_huggingface_hub_leaves_unbounded() -> None:
    request = httpx2.Request("GET", "http://hub.invalid", extensions={"timeout": {
        "connect": None, "read": None, "write": 5.0, "pool": 300.0}})  # fmt: skip
    Deadline(60.0)(request)
    assert request.extensions["timeout"] == {
        "connect": CONNECT_TIMEOUT_S, "read": 60.0, "write": 5.0, "pool": 60.0}  # fmt: skip


def test_the_hub_client_keeps_huggingface_hubs_settings_and_adds_the_deadline(
    restore_hub_session: None,
) -> None:
    real_hub_api(timeout_s=42.0)
    client = get_session()
    assert client.timeout.read is None and client.follow_redirects  # as huggingface_hub's
    request = client.build_request("GET", "http://hub.invalid")
    for hook in client.event_hooks["request"]:
        hook(request)
    assert request.extensions["timeout"]["read"] == 42.0
    assert "X-Amzn-Trace-Id" in request.headers  # huggingface_hub's own hook ran too


def test_the_real_hfapi_fits_the_seam(restore_hub_session: None) -> None:
    api: HubApi = HfApi()  # mypy checks that HfApi has every method publishing calls
    assert isinstance(HubClient().api, HfApi) and callable(api.upload_folder)
    assert git_blob_id(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"  # git's


def _cli(run_dir: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # A fresh process: huggingface_hub reads HF_HUB_OFFLINE and HF_HOME when it is imported.
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    return subprocess.run(
        [sys.executable, "-m", "emopillars", *publish_args(run_dir)],
        env={**clean, **env}, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_the_real_hfapi_refuses_under_offline_mode(run_dir: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home).mkdir()
    offline = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(home)}
    result = _cli(run_dir, {**offline, "HF_TOKEN": TOKEN})
    assert result.returncode == 2, result.stderr
    assert "HF_HUB_OFFLINE=1 is set, so huggingface_hub refuses" in result.stderr
    assert TOKEN not in result.stdout + result.stderr

    # No HF_TOKEN and no stored login: refused before any call.
    result = _cli(run_dir, offline)
    assert result.returncode == 2
    assert "no Hugging Face token: set HF_TOKEN or run `hf auth login`" in result.stderr

    # The login that `hf auth login` stores is found, and it goes no further than HfApi.
    (home / "token").write_text(TOKEN)
    result = _cli(run_dir, offline)
    assert result.returncode == 2
    assert "HF_HUB_OFFLINE=1 is set" in result.stderr
    assert TOKEN not in result.stdout + result.stderr


URL_SECRETS = ("sk-secret-123", "sk-secret-456")
SECRET_URL = f"http://user:{URL_SECRETS[0]}@127.0.0.1:9/v1?api_key={URL_SECRETS[1]}"


def test_keys_in_a_base_url_reach_no_file_and_no_message(
    tmp_path: Path,
    hub: HubClient,
    hub_api: FakeHubApi,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    config = fake_config(write_corpus(tmp_path / "stories.jsonl"), tmp_path / "run",
                         server={"base_url": SECRET_URL})  # fmt: skip
    run_pipeline(config)
    assert main(publish_args(config.output_dir, "--dry-run", str(tmp_path / "staging"))) == 0
    assert main(publish_args(config.output_dir), hub=hub) == 0
    provenance = json.loads((hub_api.folder(REPO) / "provenance.json").read_text())
    assert provenance["run_config"]["server"]["base_url"] == (
        f"http://{REDACTED}@127.0.0.1:9/v1?api_key={REDACTED}"
    )
    captured = capsys.readouterr()
    files = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert len(files) > 40  # run folder, staging tree, repo
    texts = [text.encode() for text in (captured.out, captured.err, caplog.text)]
    texts += [path.read_bytes() for path in files]
    for secret in URL_SECRETS:
        assert not [text for text in texts if secret.encode() in text]


def test_provenance_redacts_a_run_json_written_before_redaction(
    run_dir: Path, hub: HubClient, hub_api: FakeHubApi
) -> None:
    record = json.loads((run_dir / "run.json").read_text())
    record["config"]["server"]["base_url"] = SECRET_URL
    (run_dir / "run.json").write_text(json.dumps(record))
    assert main(publish_args(run_dir), hub=hub) == 0
    for name in ("provenance.json", "README.md"):
        text = (hub_api.folder(REPO) / name).read_text()
        assert not [secret for secret in URL_SECRETS if secret in text]
