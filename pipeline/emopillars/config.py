"""The run configuration: one frozen model from YAML and flags, checked before a model loads."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

EngineName = Literal["llamacpp", "vllm", "openai", "fake"]
StructuredOutputs = Literal["vllm", "llamacpp", "json_schema"]
CorpusFormat = Literal["auto", "jsonl", "csv", "parquet", "txt"]
Executor = Literal["local", "ray"]


class ConfigError(ValueError):
    """A configuration a user must fix; the message says what and how."""


class VLLMOptions(BaseModel):
    """Options of the in-process vLLM engine (`--engine vllm`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    revision: str | None = Field(None, description="model revision (branch, tag or commit)")
    dtype: str = Field("auto", description="auto, bfloat16, float16 or float32 (CPU)")
    max_model_len: int | None = Field(
        None, ge=256, description="context length; default the model's"
    )
    gpu_memory_utilization: float = Field(
        0.9, gt=0.0, le=1.0, description="share of GPU memory vLLM may take"
    )
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs one model is split over")
    enforce_eager: bool = Field(False, description="skip CUDA graph capture (faster start)")
    prefix_caching: bool = Field(True, description="reuse the shared head of prompts")
    # Leave JSON free of optional whitespace: fewer tokens, and no runaway blank padding.
    disable_any_whitespace: bool = Field(
        True,
        description="JSON without optional whitespace: fewer tokens, no runaway blank padding",
        json_schema_extra={"cli_flag": "--allow-json-whitespace"},
    )


class ServerOptions(BaseModel):
    """Options of the OpenAI-compatible client engine (`--engine openai`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str = Field("http://127.0.0.1:8000/v1", description="the server's /v1 URL")
    api_key_env: str | None = Field(
        None, description="name of the environment variable that holds the API key"
    )
    structured_outputs: StructuredOutputs = Field(
        "vllm",
        description="how the schema is sent: vllm (vllm serve), llamacpp (llama.cpp servers), "
        "json_schema (OpenAI, SGLang and others)",
    )
    concurrency: int = Field(32, ge=1, le=4096, description="requests in flight")
    request_timeout_s: float = Field(
        300.0,
        gt=0,
        description="seconds to wait for one response",
        json_schema_extra={"cli_flag": "--request-timeout"},
    )
    max_retries: int = Field(6, ge=0, le=50, description="retries of a transient failure")


class QualityGates(BaseModel):
    """Quality gates, each a reject reason; retried like any unusable answer.

    No dataset row breaks them: an answer that fails one is rejected with the gate's reason."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_utterance_words: int = Field(4, ge=1, description="shorter utterances are rejected")
    min_context_words: int = Field(8, ge=1, description="shorter contexts are rejected")
    min_rewrite_words: int = Field(4, ge=1, description="shorter rewrites are rejected")
    min_rewrite_ratio: float = Field(
        0.5, gt=0.0, description="a rewrite's length in words over the original's, at least"
    )
    max_rewrite_ratio: float = Field(
        2.0, gt=0.0, description="a rewrite's length in words over the original's, at most"
    )
    story_copy_words: int = Field(
        8,
        ge=0,
        description="an utterance sharing this many words in a row with the story "
        "copies it (0: no check)",
    )
    near_duplicate_similarity: float = Field(
        0.8,
        gt=0.0,
        le=1.0,
        description="utterances of one answer whose word sets overlap this much (Jaccard) are "
        "near duplicates",
    )
    max_non_letter_share: float = Field(
        0.5, gt=0.0, le=1.0, description="text with a larger share of non-letters is debris"
    )
    require_actor_in_story: bool = Field(
        True, description="reject characters whose name does not occur in the story"
    )
    require_intended_emotion: bool = Field(
        False, description="reject labellings that leave out the intended emotion"
    )

    @model_validator(mode="after")
    def _ratio_range(self) -> QualityGates:
        if self.min_rewrite_ratio > self.max_rewrite_ratio:
            raise ValueError("min_rewrite_ratio is above max_rewrite_ratio")
        return self


class ExecutionOptions(BaseModel):
    """How the work is spread over processes (emopillars.cluster)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    num_workers: int = Field(
        1, ge=1, description="workers sharing the run folder (default: from a SLURM array, else 1)"
    )
    worker_index: int = Field(
        0,
        ge=0,
        description="this worker, 0..N-1; owns story shards s % N == I "
        "(default: SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX)",
    )
    executor: Executor = Field(
        "local", description="local: this process; ray: one Ray task per story shard"
    )
    ray_address: str | None = Field(
        None, description="Ray cluster to join; default RAY_ADDRESS, else a local instance"
    )
    gpus_per_task: float | None = Field(
        None, ge=0.0, description="GPUs per Ray task; default vllm's tensor-parallel size, else 0"
    )
    # The schedule (run/schedule.py): neither changes the data, only how full the engine is.
    max_in_flight: int | None = Field(
        None,
        ge=1,
        le=1_000_000,
        description="requests kept at the engine at once, over many story shards; default the "
        "engine's (vllm 1024, openai 8 x concurrency, llamacpp 4)",
    )
    shards_in_flight: int = Field(
        32, ge=1, le=4096, description="story shards a worker computes at once, at most"
    )

    @model_validator(mode="after")
    def _consistent(self) -> ExecutionOptions:
        if self.worker_index >= self.num_workers:
            raise ValueError(
                f"worker_index {self.worker_index} is not below num_workers {self.num_workers} "
                f"(workers are numbered 0 to {self.num_workers - 1})"
            )
        if self.executor == "ray" and self.num_workers > 1:
            raise ValueError(
                "executor ray hands out the shards itself: leave num_workers and worker_index out"
            )
        if self.executor != "ray" and (self.ray_address or self.gpus_per_task is not None):
            raise ValueError("ray_address and gpus_per_task need executor ray")
        return self


class RunConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # Input
    corpus: Path | None = Field(
        None, description="stories: .jsonl, .csv, .parquet or a .txt folder (default: the sample)"
    )
    corpus_format: CorpusFormat = Field("auto", description="auto: from the file's suffix")
    id_field: str = Field("id", description="the corpus field that holds a story's id")
    title_field: str = Field("title", description="the corpus field that holds its title")
    text_field: str = Field("text", description="the corpus field that holds its text")
    corpus_license: str | None = Field(
        None, description="license of your corpus, e.g. cc-by-sa-4.0 for Wikipedia plots"
    )
    max_stories: int | None = Field(None, ge=1, description="use only the first N stories")
    max_story_chars: int = Field(6000, ge=100, description="longer stories are rejected")

    # Output
    output: Path | None = Field(None, description="run folder; default outputs/<run_name>")
    run_name: str | None = Field(
        None, pattern=r"^[A-Za-z0-9._-]+$", description="names the default output folder"
    )
    shard_size: int = Field(
        16, ge=1, description="stories per shard; a resumed run keeps its own unless given"
    )
    license: str | None = Field(None, description="dataset license id for the card")

    # Engine and decoding
    engine: EngineName = "llamacpp"
    model: str | None = Field(
        None,
        description="llamacpp: a GGUF file (default the packaged SmolLM2); vllm: a model id or "
        "folder; openai: the served model name",
    )
    context_window: int = Field(4096, ge=512, description="llamacpp: context length in tokens")
    threads: int | None = Field(None, ge=1, description="CPU threads in all; default all cores")
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0: greedy, as in the paper")
    repetition_penalty: float | None = Field(
        None, ge=1.0, le=2.0, description="None: the engine's default for its model"
    )
    max_tokens: dict[str, Annotated[int, Field(ge=16)]] = Field(
        default_factory=dict,
        description="max new tokens per LLM call, e.g. utterances=900; unset calls keep their "
        "step's default",
        json_schema_extra={"cli_metavar": "CALL=N"},
    )
    seed: int = Field(0, description="seeds sampling, emotion assignment and the splits")
    vllm: VLLMOptions = VLLMOptions()
    server: ServerOptions = ServerOptions()

    # Method
    prompt_version: str = Field("v1", description="the prompt folder to use, e.g. prompts/v1")
    prompts_dir: Path | None = Field(None, description="your own prompt folders; default prompts/")
    max_actors: int = Field(8, ge=1, le=30, description="characters kept per story")
    emotions_per_actor: int = Field(
        8, ge=1, le=27, description="utterances per character with distinct non-neutral emotions"
    )
    neutral_per_actor: int = Field(2, ge=0, le=5, description="neutral utterances per character")
    label_threshold: float = Field(
        0.3, ge=0.0, le=1.0, description="labels at or above this intensity are kept"
    )
    max_labels: int = Field(5, ge=1, le=10, description="emotions the teacher names at most")
    max_attempts: int = Field(3, ge=1, le=10, description="tries per request, retries included")
    gates: QualityGates = QualityGates()
    retry_temperature: float = Field(
        0.7, ge=0.0, le=2.0, description="retries sample at this temperature, with a new seed"
    )

    # Fake engine (tests, CI and benchmarks only)
    fake_fault_rate: float = Field(0.0, ge=0.0, le=1.0, description="share of broken answers")
    fake_latency_s: float = Field(0.0, ge=0.0, description="seconds per answer")

    # How the work is spread over processes; it never changes the data, so this section stays
    # out of run.json and of the run's identity.
    execution: ExecutionOptions = ExecutionOptions()

    @model_validator(mode="before")
    @classmethod
    def _flat_execution_keys(cls, values: Any) -> Any:
        """Config files written before `execution:` was a section keep working."""
        if not isinstance(values, dict):
            return values
        flat = {key: values[key] for key in ExecutionOptions.model_fields if key in values}
        if not flat:
            return values
        rest = {key: value for key, value in values.items() if key not in flat}
        section = rest.get("execution") or {}
        if isinstance(section, BaseModel):
            section = section.model_dump(exclude_unset=True)
        return {**rest, "execution": {**flat, **section}}

    @field_validator("output", mode="before")
    @classmethod
    def _output_named(cls, value: Any) -> Any:
        # Path("") is the working folder: an empty --output (an unset shell variable) would
        # spread a run over wherever the command was started.
        if isinstance(value, str) and not value.strip():
            raise ValueError("is empty: name a folder, or leave it out for outputs/<run_name>")
        if isinstance(value, str | Path) and not _is_text(str(value)):
            # Arrow opens files by UTF-8 name: such a folder could be made but not read.
            raise ValueError(
                f"{os.fsencode(value)!r} is not UTF-8 text (bytes from another encoding, or a "
                "locale that is not UTF-8, such as LC_ALL=C): use a UTF-8 locale "
                "(LC_ALL=C.UTF-8) or another folder name"
            )
        return value

    @model_validator(mode="after")
    def _check_paths(self) -> RunConfig:
        if self.corpus is not None and not self.corpus.exists():
            raise ValueError(f"corpus {self.corpus} does not exist")
        if self.engine == "llamacpp" and self.model is not None:
            if not Path(self.model).is_file():
                raise ValueError(f"model {self.model} is not a file (llamacpp needs a .gguf file)")
            if not _is_gguf(Path(self.model)):
                raise ValueError(
                    f"model {self.model} is not a GGUF file (llamacpp needs a .gguf file; "
                    "other formats run with --engine vllm or --engine openai)"
                )
        if self.engine in ("vllm", "openai") and not self.model:
            raise ValueError(f"--engine {self.engine} needs --model (a model id or folder)")
        return self

    @property
    def resolved_run_name(self) -> str:
        if self.run_name:
            return self.run_name
        source = "sample" if self.corpus is None else self.corpus.stem
        return f"{source}-{self.engine}"

    @property
    def output_dir(self) -> Path:
        return self.output if self.output is not None else Path("outputs") / self.resolved_run_name


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> None:
    """Deep-merge: a flag for `vllm.dtype` keeps the YAML's other `vllm` fields."""
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def load_config(path: Path | None = None, **overrides: Any) -> RunConfig:
    """Read a YAML config (optional) and apply flag overrides; None overrides are ignored."""
    values: dict[str, Any] = {}
    if path is not None:
        values.update(read_config_file(path))
    _merge(values, {key: value for key, value in overrides.items() if value is not None})
    try:
        return RunConfig.model_validate(values)
    except ValidationError as error:
        raise ConfigError(f"invalid config: {describe(error)}") from None


def read_config_file(path: Path) -> dict[str, Any]:
    """The fields of a YAML config file; ConfigError, one line naming the file and what is
    wrong with it, when it cannot be read, is not text, not YAML or not a mapping."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"cannot read config {path}: {error.strerror or error}") from error
    try:
        if b"\0" in raw:  # valid UTF-8 all the same, but no text file holds NUL bytes
            raise ValueError("it holds NUL bytes")
        text = raw.decode("utf-8")
    except ValueError as error:
        reason = str(error)
        if isinstance(error, UnicodeDecodeError):
            reason = f"{error.reason} at byte {error.start}"
        raise ConfigError(
            f"config {path} is not a text file ({reason}): give a YAML file of field: value"
        ) from error
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"config {path} is not valid YAML: {_yaml_problem(error)}") from error
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"config {path} must be a mapping of field: value")
    fields: dict[str, Any] = loaded or {}
    return fields


def _yaml_problem(error: yaml.YAMLError) -> str:
    """PyYAML's message, which spans lines and quotes the text, as one line."""
    if isinstance(error, yaml.MarkedYAMLError) and error.problem:
        mark = error.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        return f"{error.problem}{where}"
    return " ".join(str(error).split())


def describe(error: ValidationError) -> str:
    """A pydantic error as one line a user can act on: `field.path: what is wrong; ...`."""
    return "; ".join(
        # pydantic prefixes our validators' own messages with "Value error, ".
        f"{'.'.join(str(part) for part in issue['loc']) or 'value'}: "
        + issue["msg"].removeprefix("Value error, ")
        for issue in error.errors()
    )


def _is_text(name: str) -> bool:
    """Whether a name decoded from the OS is text: undecodable bytes arrive as lone
    surrogates, which no UTF-8 encoder (Arrow's included) takes."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_gguf(path: Path) -> bool:
    """Whether the file starts as every GGUF file does (llama.cpp's own check, made before
    a model is loaded, so that a wrong file is a config error and not a traceback)."""
    try:
        with path.open("rb") as handle:
            return handle.read(4) == b"GGUF"
    except OSError:
        return True  # unreadable: llama.cpp's loader names the problem
