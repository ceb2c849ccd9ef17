"""Credentials in URLs never reach a message, a log line or run.json: a key in `--base-url`
(as user info or a query parameter) and the key of `--api-key-env`."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from conftest import fake_config
from emopillars.cli import main
from emopillars.engines import EngineInfo, EngineSpec
from emopillars.engines.fake import FakeEngine
from emopillars.run.runner import Runner
from emopillars.secrets import REDACTED, RedactingFilter, redact, redact_url
from emopillars.stages import STAGES
from servers import free_port

SECRETS = ("sk-secret-123", "sk-secret-456")


def secret_url(port: int) -> str:
    return f"http://user:{SECRETS[0]}@127.0.0.1:{port}/v1?api_key={SECRETS[1]}"


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("https://user:pw@host/v1", f"https://{REDACTED}@host/v1"),
        ("https://KEY@host/v1?model=m", f"https://{REDACTED}@host/v1?model=m"),
        ("GET https://h/v1?api_key=K1&x=2", f"GET https://h/v1?api_key={REDACTED}&x=2"),
        ("https://h/v1?key=K&token=T", f"https://h/v1?key={REDACTED}&token={REDACTED}"),
        ("(url https://h/?access_token=T)", f"(url https://h/?access_token={REDACTED})"),
        ("https://blob/x?sv=1&sig=a%2Bb=", f"https://blob/x?sv=1&sig={REDACTED}"),
        ("https://s3/x?X-Amz-Signature=abc", f"https://s3/x?X-Amz-Signature={REDACTED}"),
        ("https://h/v1?max_tokens=5&model=m", "https://h/v1?max_tokens=5&model=m"),
        ("user@example.org wrote http://host/a@b", "user@example.org wrote http://host/a@b"),
    ],
)
def test_url_credentials_are_redacted_anywhere_in_a_text(text: str, redacted: str) -> None:
    assert redact_url(text) == redacted
    assert redact_url(redacted) == redacted  # redacting twice changes nothing


def test_json_values_redact_secret_keys_urls_and_given_secrets() -> None:
    value = {
        "server": {"base_url": secret_url(1), "api_key_env": "KEY_VAR"},
        "hf_token": "t",
        "note": "made with sk-given-1",
    }
    assert redact(value, ("sk-given-1",)) == {
        "server": {
            "base_url": f"http://{REDACTED}@127.0.0.1:1/v1?api_key={REDACTED}",
            "api_key_env": "KEY_VAR",  # a `*_env` key's value names a variable: kept
        },
        "hf_token": REDACTED,
        "note": f"made with {REDACTED}",
    }


def test_the_logging_filter_redacts_what_any_library_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("some.library")
    caplog.handler.addFilter(RedactingFilter())
    try:
        with caplog.at_level(logging.INFO):
            logger.info("HTTP Request: POST %s", secret_url(8000))
            try:
                raise ConnectionError(f"cannot reach {secret_url(8000)}")
            except ConnectionError:
                logger.exception("failed")
    finally:
        caplog.handler.filters.clear()
    assert REDACTED in caplog.text and "cannot reach" in caplog.text
    assert_no_secret(caplog.text)


def test_run_json_records_the_config_and_engine_redacted(corpus: Path, tmp_path: Path) -> None:
    port = free_port()
    config = fake_config(corpus, tmp_path / "run", server={"base_url": secret_url(port)})
    # An engine whose own description holds the URL: its requests are keyed by the info as
    # it is; only the record is redacted.
    info = EngineInfo(name="openai", model="m", options={"base_url": secret_url(port)})
    spec = EngineSpec(info=info, repetition_penalty=1.03, batch_size=None, load=FakeEngine)
    runner = Runner(config, spec=spec)
    runner.prepare()
    text = (tmp_path / "run" / "run.json").read_text()
    assert_no_secret(text)
    record = json.loads(text)
    redacted = f"http://{REDACTED}@127.0.0.1:{port}/v1?api_key={REDACTED}"
    assert record["config"]["server"]["base_url"] == redacted
    assert record["engine"]["options"] == {"base_url": redacted}
    step = STAGES[0].steps[0]
    row = {"story_id": "s1", "title": "T", "text": "Mara and Tomas."}
    assert runner._request(step, row, 0).engine_fingerprint == info.fingerprint


def test_a_rotated_key_keeps_the_run_identity(corpus: Path, tmp_path: Path) -> None:
    # Every worker redacts the same way, so the plan's run fingerprint is the redacted
    # record's: the same for any key in the URL, another for another URL.
    port = free_port()

    def fingerprint(base_url: str) -> str:
        config = fake_config(corpus, tmp_path / "run", server={"base_url": base_url})
        Runner(config).prepare()
        plan = json.loads((tmp_path / "run" / "plan.json").read_text())
        return str(plan["run_fingerprint"])

    first = fingerprint(secret_url(port))
    assert fingerprint(secret_url(port).replace("456", "789")) == first
    assert fingerprint(f"http://127.0.0.1:{port}/v1") != first


def test_a_dead_server_with_keys_in_its_url_leaks_them_nowhere(
    corpus: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The whole command: its engine spec, run.json, the engine's error, the one-line message.
    env_key = "sk-from-env-789"
    monkeypatch.setenv("TEST_SERVER_KEY", env_key)
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "run"
    code = main(["run", "--engine", "openai", "--model", "m", "--corpus", str(corpus),
                 "--output", str(out), "--base-url", secret_url(free_port()),
                 "--api-key-env", "TEST_SERVER_KEY", "--max-retries", "0",
                 "--request-timeout", "2", "--max-stories", "2", "--quiet"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 1
    assert "still failing after 0 retries" in captured.err and REDACTED in captured.err
    assert "Traceback" not in captured.err
    for text in (captured.out, captured.err, caplog.text):
        assert_no_secret(text)
        assert env_key not in text
    for path in out.rglob("*"):
        if path.is_file():
            assert_no_secret(path.read_text(errors="replace"))
