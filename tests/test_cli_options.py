"""The flags of `emopillars run` come from RunConfig (cli/options.py): every field has one,
the flags users already know keep their names, and the parser is real argparse."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, get_args

import pytest
from emopillars.cli import main
from emopillars.cli.main import _overrides, _parser
from emopillars.cli.options import (
    TOP_LEVEL_GROUPS,
    ConfigFlag,
    DuplicateFlagError,
    add_config_flags,
    config_flags,
    flag_of,
    path_argument,
)
from emopillars.config import (
    CorpusFormat,
    EngineName,
    Executor,
    RunConfig,
    StructuredOutputs,
    load_config,
)
from pydantic import BaseModel, Field


def parse(*argv: str) -> dict[str, Any]:
    """The config overrides of `emopillars run ARGV...`."""
    return _overrides(_parser().parse_args(["run", *argv]))


def field_paths(model: type[BaseModel] = RunConfig) -> list[tuple[str, ...]]:
    """Every setting of `model`: its fields, a section's fields under the section's name."""
    paths: list[tuple[str, ...]] = []
    for name, info in model.model_fields.items():
        section = info.annotation
        if isinstance(section, type) and issubclass(section, BaseModel):
            paths.extend((name, inner) for inner in section.model_fields)
        else:
            paths.append((name,))
    return paths


def nested(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    for name in reversed(path):
        value = {name: value}
    return value  # type: ignore[no-any-return]


def example(flag: ConfigFlag) -> tuple[list[str], Any]:
    """A command line that gives the flag's field a value, and that value."""
    arguments = flag.arguments
    if arguments.get("action") == "store_const":
        return [flag.flag], arguments["const"]
    if "choices" in arguments:
        return [flag.flag, str(arguments["choices"][-1])], arguments["choices"][-1]
    if flag.path == ("max_tokens",):
        return [flag.flag, "labels=150"], {"labels": 150}
    samples = {
        int: ("7", 7),
        float: ("0.5", 0.5),
        str: ("text", "text"),
        path_argument: ("a/b", Path("a/b")),
    }
    text, value = samples[arguments["type"]]
    return [flag.flag, text], value


def test_every_config_field_has_a_flag() -> None:
    flags = {flag.path: flag for flag in config_flags()}
    assert sorted(flags) == sorted(field_paths())
    for path, flag in flags.items():
        argv, value = example(flag)
        assert parse(*argv) == nested(path, value), flag.flag


def test_no_two_fields_share_a_flag() -> None:
    names = [flag.flag for flag in config_flags()]
    assert len(names) == len(set(names))
    assert "--config" not in names and "--quiet" not in names


# Every flag `run` had before its flags were generated, as users' scripts and the examples
# write them: each still sets the same field.
KNOWN_FLAGS: list[tuple[list[str], dict[str, Any]]] = [
    (["--corpus", "c.jsonl"], {"corpus": Path("c.jsonl")}),
    (["--corpus-format", "csv"], {"corpus_format": "csv"}),
    (["--id-field", "uid"], {"id_field": "uid"}),
    (["--title-field", "name"], {"title_field": "name"}),
    (["--text-field", "plot"], {"text_field": "plot"}),
    (["--output", "out/run"], {"output": Path("out/run")}),
    (["--run-name", "r1"], {"run_name": "r1"}),
    (["--max-stories", "3"], {"max_stories": 3}),
    (["--max-actors", "2"], {"max_actors": 2}),
    (["--shard-size", "5"], {"shard_size": 5}),
    (["--seed", "11"], {"seed": 11}),
    (["--license", "mit"], {"license": "mit"}),
    (["--corpus-license", "cc-by-sa-4.0"], {"corpus_license": "cc-by-sa-4.0"}),
    (["--engine", "vllm"], {"engine": "vllm"}),
    (["--model", "org/model"], {"model": "org/model"}),
    (["--threads", "4"], {"threads": 4}),
    (["--temperature", "0.5"], {"temperature": 0.5}),
    (["--repetition-penalty", "1.1"], {"repetition_penalty": 1.1}),
    (["--revision", "abc123"], {"vllm": {"revision": "abc123"}}),
    (["--dtype", "bfloat16"], {"vllm": {"dtype": "bfloat16"}}),
    (["--max-model-len", "8192"], {"vllm": {"max_model_len": 8192}}),
    (["--gpu-memory-utilization", "0.8"], {"vllm": {"gpu_memory_utilization": 0.8}}),
    (["--tensor-parallel-size", "2"], {"vllm": {"tensor_parallel_size": 2}}),
    (["--enforce-eager"], {"vllm": {"enforce_eager": True}}),
    (["--no-prefix-caching"], {"vllm": {"prefix_caching": False}}),
    (["--base-url", "http://h:1/v1"], {"server": {"base_url": "http://h:1/v1"}}),
    (["--api-key-env", "MY_KEY"], {"server": {"api_key_env": "MY_KEY"}}),
    (["--structured-outputs", "json_schema"], {"server": {"structured_outputs": "json_schema"}}),
    (["--concurrency", "8"], {"server": {"concurrency": 8}}),
    (["--request-timeout", "60"], {"server": {"request_timeout_s": 60.0}}),
    (["--max-retries", "3"], {"server": {"max_retries": 3}}),
    (["--num-workers", "4"], {"execution": {"num_workers": 4}}),
    (["--worker-index", "1"], {"execution": {"worker_index": 1}}),
    (["--executor", "ray"], {"execution": {"executor": "ray"}}),
    (["--ray-address", "auto"], {"execution": {"ray_address": "auto"}}),
    (["--gpus-per-task", "0.5"], {"execution": {"gpus_per_task": 0.5}}),
]


@pytest.mark.parametrize(
    ("argv", "expected"), KNOWN_FLAGS, ids=[argv[0] for argv, _ in KNOWN_FLAGS]
)
def test_the_flags_users_know_set_the_same_fields(
    argv: list[str], expected: dict[str, Any]
) -> None:
    assert parse(*argv) == expected


def test_flags_of_one_section_make_one_override() -> None:
    overrides = parse("--dtype", "float16", "--enforce-eager", "--max-retries", "2")
    assert overrides == {
        "vllm": {"dtype": "float16", "enforce_eager": True},
        "server": {"max_retries": 2},
    }
    args = _parser().parse_args(["run", "--config", "run.yaml", "--quiet"])
    assert (args.config, args.quiet, _overrides(args)) == (Path("run.yaml"), True, {})


def test_max_tokens_reaches_the_config() -> None:
    overrides = parse("--max-tokens", "utterances=900", "--max-tokens", "labels=150")
    assert overrides == {"max_tokens": {"utterances": 900, "labels": 150}}
    config = load_config(None, engine="fake", **overrides)
    assert config.max_tokens == {"utterances": 900, "labels": 150}
    assert parse("--max-tokens", "labels=100", "--max-tokens", "labels=120") == {
        "max_tokens": {"labels": 120}  # the last one wins
    }


def test_max_tokens_flags_keep_the_config_files_other_calls(tmp_path: Path) -> None:
    config_file = tmp_path / "run.yaml"
    config_file.write_text("engine: fake\nmax_tokens:\n  labels: 100\n  contexts: 300\n")
    config = load_config(config_file, **parse("--max-tokens", "labels=150"))
    assert config.max_tokens == {"labels": 150, "contexts": 300}


@pytest.mark.parametrize("value", ["utterances", "utterances=", "=900", "utterances=lots"])
def test_a_malformed_max_tokens_is_a_usage_error(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as usage:
        parse("--max-tokens", value)
    assert usage.value.code == 2
    assert "argument --max-tokens: expected CALL=N" in capsys.readouterr().err


def test_a_too_small_max_tokens_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--engine", "fake", "--output", str(tmp_path / "x"), "--max-tokens", "labels=3"]
    assert main(["run", *argv]) == 2
    assert "max_tokens.labels" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_launch_passes_generated_flags_on_to_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The config is checked before any worker starts, with the flags that launch passes on.
    argv = ["--engine", "fake", "--output", str(tmp_path / "x"), "--max-tokens", "labels=3"]
    assert main(["launch", "--gpus", "0,1", *argv]) == 2
    assert "max_tokens.labels" in capsys.readouterr().err
    assert main(["launch", "--gpus", "0,1", "--worker-index", "1", *argv[:4]]) == 2
    assert "leave out --worker-index" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_choices_come_from_the_literal() -> None:
    choices = {
        flag.flag: tuple(flag.arguments["choices"])
        for flag in config_flags()
        if "choices" in flag.arguments
    }
    assert choices == {
        "--corpus-format": get_args(CorpusFormat),
        "--engine": get_args(EngineName),
        "--structured-outputs": get_args(StructuredOutputs),
        "--executor": get_args(Executor),
    }


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--engine", "gpt"], "argument --engine: invalid choice: 'gpt'"),
        (["--executor", "slurm"], "argument --executor: invalid choice: 'slurm'"),
        (["--max-actors", "many"], "argument --max-actors: invalid int value: 'many'"),
    ],
)
def test_a_bad_value_exits_2_with_argparses_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as usage:
        main(["run", *argv])
    assert usage.value.code == 2
    assert message in capsys.readouterr().err


def test_no_prefix_caching_turns_it_off() -> None:
    assert load_config(None, engine="fake").vllm.prefix_caching is True
    config = load_config(None, engine="fake", **parse("--no-prefix-caching"))
    assert config.vllm.prefix_caching is False
    assert config.vllm.enforce_eager is False
    assert load_config(None, **parse("--enforce-eager")).vllm.enforce_eager is True


def test_flag_of_names_a_fields_flag() -> None:
    assert flag_of("server", "request_timeout_s") == "--request-timeout"
    assert flag_of("execution", "num_workers") == "--num-workers"
    assert flag_of("label_threshold") == "--label-threshold"
    with pytest.raises(KeyError):
        flag_of("no_such_field")


def test_help_lists_every_flag_by_section(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["run", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    for flag in config_flags():
        assert flag.flag in text
    for title in ("input:", "method:", "vllm: options of the in-process vLLM engine"):
        assert title in text
    assert "characters kept per story (default: 8)" in text  # the field's description
    assert "owns story shards s % N == I" in " ".join(text.split())  # `%` escaped


def test_top_level_groups_start_at_real_fields() -> None:
    assert set(TOP_LEVEL_GROUPS) <= set(RunConfig.model_fields)
    assert {flag.group for flag in config_flags()} >= set(TOP_LEVEL_GROUPS.values())


class Section(BaseModel):
    """A section."""

    revision: str | None = None
    caching: bool = True


def test_the_generator_refuses_two_fields_with_one_flag() -> None:
    class Clash(BaseModel):
        revision: str = "main"
        vllm: Section = Section()

    with pytest.raises(DuplicateFlagError, match=r"revision and vllm\.revision .* --revision"):
        config_flags(Clash)

    class NegatedClash(BaseModel):
        no_caching: int = 0
        vllm: Section = Section()  # caching defaults to true: --no-caching

    with pytest.raises(DuplicateFlagError, match="--no-caching"):
        config_flags(NegatedClash)


def test_the_generator_refuses_a_field_named_like_a_hand_written_flag() -> None:
    class Shadow(BaseModel):
        config: str = "x"

    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    with pytest.raises(DuplicateFlagError, match="config field config"):
        add_config_flags(parser, Shadow)


def test_a_field_can_name_its_own_flag() -> None:
    class Renamed(BaseModel):
        timeout_s: float = Field(1.0, json_schema_extra={"cli_flag": "--timeout"})

    [flag] = config_flags(Renamed)
    assert (flag.flag, flag.dest) == ("--timeout", "timeout_s")


def test_a_field_without_a_flag_rule_fails_the_build() -> None:
    class Unknown(BaseModel):
        stages: list[str] = []

    with pytest.raises(TypeError, match="stages"):
        config_flags(Unknown)


def test_an_empty_path_is_refused_rather_than_read_as_the_working_folder() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="is empty"):
        path_argument("  ")
    assert path_argument("a/b") == Path("a/b")
