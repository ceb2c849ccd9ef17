"""Engines: conformance of every engine available here, and the openai client's retry,
fail-fast and structured-output behaviour against a scripted local server."""

from __future__ import annotations

import time
from contextlib import closing

import pytest
from conformance import check_conformance, conformance_batch, conformance_of, constrained
from emopillars.config import ConfigError, RunConfig, ServerOptions
from emopillars.engines import EngineInfo, Message, engine_spec
from emopillars.engines.chat import fold_system_turns
from emopillars.engines.fake import FakeEngine
from emopillars.engines.openai_server import OpenAIServerEngine, ServerError
from servers import Script, scripted_server


def options(base_url: str, **values: object) -> ServerOptions:
    return ServerOptions.model_validate({"base_url": base_url, "max_retries": 3, **values})


def test_fake_engine_conforms_and_is_deterministic() -> None:
    batch = conformance_batch("fake")
    assert check_conformance(FakeEngine(), batch) == ["valid"] * len(batch)
    assert FakeEngine().generate(batch) == FakeEngine().generate(batch)


@pytest.mark.model
def test_embedded_llamacpp_engine_conforms() -> None:
    assert constrained(conformance_of(RunConfig(engine="llamacpp")))


@pytest.mark.parametrize("mode", ["vllm", "llamacpp", "json_schema"])
def test_openai_engine_conforms_in_every_structured_output_mode(mode: str) -> None:
    script = Script()
    with scripted_server(script) as url:
        batch = conformance_batch("openai")
        with closing(OpenAIServerEngine("m", options(url, structured_outputs=mode))) as engine:
            assert check_conformance(engine, batch) == ["valid"] * len(batch)
    # Requests go out concurrently: find the body of the first request by its prompt.
    prompt = batch[0].messages[0].content
    body = next(b for b in script.bodies if b["messages"][0]["content"] == prompt)
    if mode == "vllm":
        assert body["structured_outputs"] == {"json": batch[0].schema}
        assert body["repetition_penalty"] == batch[0].sampling.repetition_penalty
    elif mode == "llamacpp":
        assert body["response_format"] == {"type": "json_object", "schema": batch[0].schema}
        assert body["repeat_penalty"] == batch[0].sampling.repetition_penalty
    else:
        assert body["response_format"]["json_schema"]["schema"] == batch[0].schema
    assert body["temperature"] == 0.0 and body["model"] == "m"


def test_transient_failures_are_retried_with_backoff() -> None:
    script = Script(failures=["429", "500", "slow"], slow_seconds=2.0)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:  # records the backoff instead of sleeping it
        waits.append(seconds)

    with scripted_server(script) as url:
        engine = OpenAIServerEngine(
            "m", options(url, concurrency=1, request_timeout_s=0.5, max_retries=4), sleep=sleep
        )
        with closing(engine):
            results = engine.generate(conformance_batch("openai")[:1])
    assert results[0].finish_reason == "stop" and results[0].text.startswith("{")
    assert len(script.bodies) == 4  # 429, 500, a timed-out slow answer, then the answer
    # The 429's Retry-After (0 s) is honoured; then exponential backoff from 1 s with up to
    # 1 s of jitter: 2-3 s after the second failure, 4-5 s after the third.
    assert len(waits) == 3 and waits[0] == 0.0
    assert 2.0 <= waits[1] <= 3.0 and 4.0 <= waits[2] <= 5.0


def test_a_server_that_never_answers_says_so_when_the_retries_run_out() -> None:
    async def no_wait(seconds: float) -> None:
        pass

    with scripted_server(Script(failures=["slow"] * 3, slow_seconds=3.0)) as url:
        engine = OpenAIServerEngine(
            "m", options(url, concurrency=1, request_timeout_s=0.3, max_retries=2), sleep=no_wait
        )
        with closing(engine), pytest.raises(ServerError) as failure:
            engine.generate(conformance_batch("openai")[:1])
    assert "still failing after 2 retries (TimeoutError: no answer within --request-timeout)" in (
        str(failure.value)
    )


def test_a_refused_key_fails_fast_with_the_variable_to_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_SERVER_KEY", "sk-test-not-real")
    script = Script(failures=["401"] * 10)
    with scripted_server(script) as url:
        engine = OpenAIServerEngine("m", options(url, api_key_env="TEST_SERVER_KEY"))
        with closing(engine), pytest.raises(ServerError, match="TEST_SERVER_KEY") as failure:
            engine.generate(conformance_batch("openai")[:1])
    assert len(script.bodies) == 1, "a 401 must not be retried"
    assert "sk-test-not-real" not in str(failure.value)


def test_a_prompt_over_the_context_is_a_result_not_a_crash() -> None:
    with (
        scripted_server(Script(failures=["400ctx"])) as url,
        closing(OpenAIServerEngine("m", options(url, concurrency=1))) as engine,
    ):
        results = engine.generate(conformance_batch("openai")[:2])
    assert results[0].finish_reason == "error" and "prompt too long" in (results[0].error or "")
    assert results[1].finish_reason == "stop"


def test_a_dead_server_ends_with_an_error_instead_of_hanging() -> None:
    from servers import free_port

    async def no_wait(seconds: float) -> None:  # the backoff policy is tested above
        pass

    url = f"http://127.0.0.1:{free_port()}/v1"
    engine = OpenAIServerEngine(
        "m", options(url, max_retries=2, request_timeout_s=1.0), sleep=no_wait
    )
    began = time.monotonic()
    with closing(engine), pytest.raises(ServerError, match="still failing after 2 retries"):
        engine.generate(conformance_batch("openai"))
    assert time.monotonic() - began < 30


def test_a_missing_api_key_variable_is_a_config_error() -> None:
    config = RunConfig.model_validate(
        {"engine": "openai", "model": "m", "server": {"api_key_env": "NO_SUCH_KEY_VAR"}}
    )
    with pytest.raises(ConfigError, match="NO_SUCH_KEY_VAR"):
        engine_spec(config)


def test_vllm_engine_without_vllm_names_the_extra() -> None:
    # vLLM is not installed in the main test environment (tests_vllm/ runs it for real).
    config = RunConfig(engine="vllm", model="some/model")
    with pytest.raises(ConfigError, match=r"emopillars\[vllm\]"):
        engine_spec(config)


def test_engine_identity_ignores_settings_that_do_not_change_answers() -> None:
    base = RunConfig(engine="openai", model="m")
    faster = base.model_copy(update={"server": options("http://elsewhere:1/v1", concurrency=99)})
    assert engine_spec(base).info.fingerprint == engine_spec(faster).info.fingerprint
    other_model = base.model_copy(update={"model": "n"})
    assert engine_spec(base).info.fingerprint != engine_spec(other_model).info.fingerprint
    assert EngineInfo("a", "b", {}).fingerprint != EngineInfo("a", "c", {}).fingerprint


def test_system_turns_fold_into_the_first_user_turn() -> None:
    messages = (Message("system", "Rules."), Message("user", "Task."))
    assert fold_system_turns(messages) == (Message("user", "Rules.\n\nTask."),)
    assert fold_system_turns((Message("user", "Task."),)) == (Message("user", "Task."),)


def test_keys_in_the_base_url_stay_out_of_errors_and_retry_warnings(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from emopillars.secrets import REDACTED
    from servers import free_port

    async def no_wait(seconds: float) -> None:
        pass

    secrets = ("sk-secret-123", "sk-secret-456", "sk-from-env-789")
    monkeypatch.setenv("TEST_SERVER_KEY", secrets[2])
    caplog.set_level(logging.DEBUG)
    url = f"http://user:{secrets[0]}@127.0.0.1:{free_port()}/v1?api_key={secrets[1]}"
    engine = OpenAIServerEngine(
        "m",
        options(url, max_retries=2, request_timeout_s=1.0, api_key_env="TEST_SERVER_KEY"),
        sleep=no_wait,
    )
    with (
        closing(engine),
        pytest.raises(ServerError, match="still failing after 2 retries") as failure,
    ):
        engine.generate(conformance_batch("openai")[:1])
    message = str(failure.value)
    assert f"http://{REDACTED}@127.0.0.1:" in message and f"api_key={REDACTED}" in message
    assert "retry 2" in caplog.text
    for text in (message, caplog.text):
        assert not [secret for secret in secrets if secret in text]
