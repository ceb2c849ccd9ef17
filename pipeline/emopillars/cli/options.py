"""The flags of `emopillars run`, generated from RunConfig: its fields are the one source of the
flags' names, types, help texts and choices.

The rules, applied to each field in the order config.py declares them:

- a top-level field `max_stories` is `--max-stories` (dest `max_stories`); a field of a section
  (a nested model, such as `vllm: VLLMOptions`) is named without its section, `--max-model-len`,
  with dest `vllm__max_model_len`, which cli.main turns into {"vllm": {"max_model_len": ...}};
- a bool that defaults to False is switched on by `--name`; one that defaults to True is
  switched off by `--no-name`;
- `X | None` takes an X; a Literal offers its values as choices; a `dict[str, V]` is a
  repeatable `--name KEY=V`;
- the help is the field's description, with its default;
- a name that breaks the rules comes from the field's `json_schema_extra` ("cli_flag",
  "cli_metavar").

Two fields that would get the same flag stop the parser from being built (DuplicateFlagError).
"""

from __future__ import annotations

import argparse
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union, cast, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from emopillars.config import RunConfig

# The top-level fields in groups, as config.py's comments head them: each group starts at
# the field named here and holds the fields declared after it, up to the next group's first.
TOP_LEVEL_GROUPS: Mapping[str, str] = {
    "corpus": "input",
    "output": "output",
    "engine": "engine and decoding",
    "prompt_version": "method",
    "fake_fault_rate": "fake engine (tests, CI and benchmarks only)",
}
DEFAULT_GROUP = "run settings"

SCALARS: tuple[type, ...] = (int, float, str, Path)


class DuplicateFlagError(ValueError):
    """Two config fields (or a field and a hand-written flag) would get the same flag."""


@dataclass(frozen=True)
class ConfigFlag:
    """One generated flag: `path` is the field's place in RunConfig, e.g. ("vllm", "dtype")."""

    flag: str
    path: tuple[str, ...]
    group: str
    arguments: dict[str, Any] = field(compare=False)  # the rest of add_argument's arguments

    @property
    def dest(self) -> str:
        return "__".join(self.path)

    @property
    def key(self) -> str:
        """The field as a config file names it: `vllm.dtype`."""
        return ".".join(self.path)


def config_flags(
    model: type[BaseModel] = RunConfig, groups: Mapping[str, str] = TOP_LEVEL_GROUPS
) -> list[ConfigFlag]:
    """A flag for every field of `model` and of its sections, each flag name used once."""
    flags: list[ConfigFlag] = []
    group = DEFAULT_GROUP
    for name, info in model.model_fields.items():
        group = groups.get(name, group)
        section = _section(info)
        if section is None:
            flags.append(_flag((name,), info, group))
            continue
        title = f"{name}: {_first_line(section)}".rstrip(": ")  # the config file's section
        flags.extend(_flag((name, inner), spec, title) for inner, spec in _fields(section))
    seen: dict[str, ConfigFlag] = {}
    for flag in flags:
        if flag.flag in seen:
            raise DuplicateFlagError(
                f"fields {seen[flag.flag].key} and {flag.key} both get the flag {flag.flag}: "
                'name one of them with json_schema_extra={"cli_flag": "--..."}'
            )
        seen[flag.flag] = flag
    return flags


def add_config_flags(
    parser: argparse.ArgumentParser, model: type[BaseModel] = RunConfig
) -> list[ConfigFlag]:
    """Add the flags of `model`'s fields to `parser`, in an argument group per section (and per
    group of top-level fields); their values are left None when the flag is not given."""
    flags = config_flags(model)
    made: dict[str, argparse._ArgumentGroup] = {}
    for flag in flags:
        if flag.group not in made:
            made[flag.group] = parser.add_argument_group(flag.group)
        try:
            made[flag.group].add_argument(flag.flag, dest=flag.dest, **flag.arguments)
        except argparse.ArgumentError as error:
            raise DuplicateFlagError(f"config field {flag.key}: {error}") from None
    return flags


def flag_of(*path: str) -> str:
    """The flag that sets a field: flag_of("server", "request_timeout_s") is --request-timeout."""
    for flag in config_flags():
        if flag.path == path:
            return flag.flag
    raise KeyError(".".join(path))


def _fields(model: type[BaseModel]) -> Iterator[tuple[str, FieldInfo]]:
    for name, info in model.model_fields.items():
        if _section(info) is not None:
            raise TypeError(f"{model.__name__}.{name}: sections within sections have no flags")
        yield name, info


def _section(info: FieldInfo) -> type[BaseModel] | None:
    annotation = info.annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _first_line(model: type[BaseModel]) -> str:
    doc = model.__dict__.get("__doc__") or ""  # its own docstring, not BaseModel's
    lines = [line.strip() for line in doc.strip().splitlines()]
    first = lines[0].rstrip(".") if lines else ""
    if first[1:2].islower():  # "Options of ..." reads "vllm: options of ..."; "GPU ..." stays
        first = first[0].lower() + first[1:]
    return first


def _extra(info: FieldInfo) -> dict[str, str]:
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    mine = {key: value for key, value in extra.items() if key.startswith("cli_")}
    return {key: str(value) for key, value in mine.items()}


def _flag(path: tuple[str, ...], info: FieldInfo, group: str) -> ConfigFlag:
    name, key = path[-1], ".".join(path)
    extra = _extra(info)
    annotation = _unwrap(info.annotation)
    default = None if info.default_factory is not None else info.default
    negated = "no-" if annotation is bool and default is True else ""
    flag = extra.get("cli_flag", f"--{negated}{_dashed(name)}")
    arguments: dict[str, Any]
    if annotation is bool:
        if not isinstance(default, bool):
            raise TypeError(f"{key}: a bool field needs a bool default to have a flag")
        doing = f"sets {key}: {'false' if default else 'true'}"
        arguments = {
            "action": "store_const",
            "const": not default,
            "help": _help(info.description, None, doing),
        }
    elif get_origin(annotation) is dict:
        key_type, value_type = get_args(annotation)
        if key_type is not str:
            raise TypeError(f"{key}: only dict[str, ...] fields have flags")
        convert, _ = _scalar(_unwrap(value_type), key)
        metavar = extra.get("cli_metavar", f"KEY={_metavar(convert, 'value')}")
        arguments = {
            "action": _MergeEntries,
            "type": _entry(convert, metavar),
            "metavar": metavar,
            "help": _help(info.description, None, "repeatable"),
        }
    else:
        convert, choices = _scalar(annotation, key)
        arguments = {"type": convert, "help": _help(info.description, default)}
        if choices is not None:
            arguments["choices"] = choices
        else:
            arguments["metavar"] = extra.get("cli_metavar", _metavar(convert, name))
    return ConfigFlag(flag, path, group, arguments)


def _dashed(name: str) -> str:
    return name.replace("_", "-")


def _unwrap(annotation: Any) -> Any:
    """`Annotated[X, ...]` and `X | None` are X."""
    if get_origin(annotation) is Annotated:
        return _unwrap(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        members = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(members) == 1:
            return _unwrap(members[0])
    return annotation


def _scalar(annotation: Any, key: str) -> tuple[Callable[[str], Any], tuple[Any, ...] | None]:
    """The argparse type and choices of a one-value field."""
    if get_origin(annotation) is Literal:
        choices = get_args(annotation)
        kinds = {type(choice) for choice in choices}
        if len(kinds) != 1 or not kinds <= set(SCALARS):
            raise TypeError(f"{key}: a Literal needs values of one type (int, float or str)")
        return kinds.pop(), choices
    if annotation is Path:
        return path_argument, None
    if annotation in SCALARS:
        return annotation, None
    raise TypeError(
        f"{key}: no flag for a field of type {annotation!r}: add a rule to emopillars.cli.options"
    )


def path_argument(text: str) -> Path:
    """argparse's type for a path: an empty one (an unset shell variable) is refused, where
    Path("") would be the working folder."""
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty: give a path")
    return Path(text)


def _metavar(convert: Callable[[str], Any], name: str) -> str:
    """N for a whole number, X for a number, PATH for a path, else the field's name."""
    named: dict[Any, str] = {int: "N", float: "X", path_argument: "PATH"}
    return named.get(convert, name.upper())


def _help(description: str | None, default: Any, note: str = "") -> str | None:
    parts = [description or ""]
    if default is not None and "default" not in (description or ""):
        parts.append(f"(default: {default})")
    if note:
        parts.append(f"({note})" if description else note)
    text = " ".join(part for part in parts if part)
    return text.replace("%", "%%") if text else None  # argparse formats help with %


def _entry(convert: Callable[[str], Any], metavar: str) -> Callable[[str], tuple[str, Any]]:
    """argparse's type for one `KEY=VALUE` of a mapping flag."""

    def parse(text: str) -> tuple[str, Any]:
        name, equals, value = text.partition("=")
        if not (equals and name.strip() and value.strip()):
            raise argparse.ArgumentTypeError(f"expected {metavar}, got {text!r}")
        try:
            return name.strip(), convert(value.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {metavar}, got {text!r}") from None

    return parse


class _MergeEntries(argparse.Action):
    """A repeatable `--flag KEY=VALUE`: the entries make one dict; a later KEY wins."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        name, value = cast(tuple[str, Any], values)  # one (KEY, VALUE) from _entry
        merged = dict(getattr(namespace, self.dest, None) or {})
        merged[name] = value
        setattr(namespace, self.dest, merged)
