"""Typed configuration: strict YAML -> frozen dataclasses, layered overrides, stable hashing.

Layers, lowest to highest: dataclass defaults (the paper's) <- preset file <- user file <-
``--set a.b=value`` overrides. Every key is checked: a typo is a `ConfigError` naming the dotted
key and the closest valid key, a wrong type names the key, the value and the expected type.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from adbench.errors import ConfigError, did_you_mean

T = TypeVar("T")
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; an empty file is ``{}``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``override`` into ``base`` (nested mappings merge, everything else replaces)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Turn ``{"a.b": 1}`` into ``{"a": {"b": 1}}``; keys without dots pass through."""
    out: dict[str, Any] = {}
    for dotted, value in flat.items():
        *parents, leaf = str(dotted).split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{dotted}' conflicts with a value set for '{part}'")
        node[leaf] = merge(node[leaf], value) if isinstance(node.get(leaf), dict) else value
    return out


def parse_set(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Parse ``["a.b=2048", "c=[1, 2]"]`` into a nested dict; values are read as YAML scalars."""
    flat: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key.path=value, got '{item}'")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as err:
            raise ConfigError(f"--set {key}: value '{raw}' is not valid YAML: {err}") from err
        flat[key.strip()] = _number_or_text(value)
    return unflatten(flat)


def _number_or_text(value: Any) -> Any:
    """YAML 1.1 reads ``1e-4`` as text; a user writing it on a command line means the number."""
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        return float(value)
    return value


def from_dict(cls: type[T], data: Mapping[str, Any], context: str = "config") -> T:
    """Build the frozen dataclass ``cls`` from ``data``, checking every key and value.

    A nested section given in part keeps the other values of the section's default: the
    default of the field that holds it (``trainer: {precision: "32"}`` keeps a method's own
    ``trainer.max_epochs``), not the section class's generic defaults.

    Args:
        cls: a dataclass type; nested dataclass fields are built recursively.
        data: plain mapping (from YAML); missing keys keep their defaults.
        context: prefix for error messages (e.g. the method name).
    """
    return _build(cls, data, context, prefix="")


def _field_default(field: dataclasses.Field) -> Any:
    """A field's default value (its factory called), or None when it has none."""
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def _build(cls: type, data: Any, context: str, prefix: str, default: Any = None) -> Any:
    """``cls`` from the mapping ``data``.

    Keys it lacks come from ``default`` (an instance of ``cls``, the default of the enclosing
    field) when given, else from ``cls``'s defaults.
    """
    if not isinstance(data, Mapping):
        where = prefix.rstrip(".") or "the top level"
        raise ConfigError(f"{context}: {where} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            valid = [prefix + name for name in fields]
            raise ConfigError(
                f"{context}: unknown key '{prefix}{key}'{did_you_mean(prefix + str(key), valid)} "
                f"valid keys: {', '.join(valid)}"
            )
        inner = _field_default(fields[key]) if default is None else getattr(default, key)
        kwargs[key] = _coerce(hints[key], value, context, prefix + key, inner)
    if default is not None:
        kwargs = {name: getattr(default, name) for name in fields} | kwargs
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"{context}: {prefix.rstrip('.') or cls.__name__}: {err}") from err


_NAMES = {  # type -> (a value of it, several of them), as error messages name them
    int: ("an integer", "integers"),
    float: ("a number", "numbers"),
    str: ("a string", "strings"),
    bool: ("true or false", "booleans"),
    Path: ("a path", "paths"),
    type(None): ("null", "nulls"),
}


def _type_name(tp: Any) -> str:
    """``tp`` as an error message names it: ``int | Literal["all"]`` is ``an integer or 'all'``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        names = [_type_name(arg) for arg in args]
        return f"{', '.join(names[:-1])} or {names[-1]}"
    if origin is Literal:
        return " or ".join(map(repr, args))
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis and args[0] in _NAMES:
            return f"a list of {_NAMES[args[0]][1]}"
        return "a list"
    if origin in (dict, Mapping) or tp is dict or dataclasses.is_dataclass(tp):
        return "a mapping"
    if tp in _NAMES:
        return _NAMES[tp][0]
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _text_number_hint(tp: Any, value: Any) -> str:
    """A hint when a number field got a numeral as text (``'1e9'``: YAML 1.1 needs ``1.0e+9``).

    Args:
        tp: the field's type (a union counts when it holds int or float).
        value: the value that failed.

    Returns:
        ``" (a string: ...)"``, or ``""`` when ``value`` is no numeral or ``tp`` takes no number.
    """
    accepted = (
        set(typing.get_args(tp)) if typing.get_origin(tp) in (Union, types.UnionType) else {tp}
    )
    if not isinstance(value, str) or not _NUMBER.fullmatch(value) or not accepted & {int, float}:
        return ""
    if not isinstance(yaml.safe_load(value), str):
        return " (a string: write it without quotes)"
    if float in accepted:
        mantissa, _, exponent = value.lower().partition("e")
        mantissa = mantissa if "." in mantissa else f"{mantissa}.0"
        spelled = f"{mantissa}e{exponent if exponent[0] in '+-' else '+' + exponent}"
    elif float(value).is_integer():
        spelled = str(int(float(value)))
    else:
        return f" (a string: YAML 1.1 reads {value} as text, and it is not an integer)"
    return f" (a string: YAML 1.1 reads {value} as text; write {spelled})"


def _coerce(tp: Any, value: Any, context: str, key: str, default: Any = None) -> Any:
    """``value`` checked against type ``tp``.

    ``default`` (the field's default) completes a nested dataclass section given in part.
    """
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(option, value, context, key)
            except ConfigError:
                continue
        words = [
            str(a) for o in args if typing.get_origin(o) is Literal for a in typing.get_args(o)
        ]
        hint = did_you_mean(str(value), words) if isinstance(value, str) and words else ""
        raise ConfigError(
            f"{context}: {key} must be {_type_name(tp)}, got {value!r}"
            f"{_text_number_hint(tp, value)}{hint}"
        )
    if origin is Literal:
        if value not in args:
            raise ConfigError(
                f"{context}: {key} must be one of {', '.join(map(repr, args))}, got {value!r}"
                f"{did_you_mean(str(value), [str(a) for a in args])}"
            )
        return value
    if dataclasses.is_dataclass(tp):
        if dataclasses.is_dataclass(value):
            return value
        base = default if isinstance(default, tp) else None
        return _build(tp, value, context, key + ".", base)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{context}: {key} must be a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, context, f"{key}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{context}: {key} must have {len(args)} entries, got {value!r}")
        return tuple(
            _coerce(a, v, context, f"{key}[{i}]")
            for i, (a, v) in enumerate(zip(args, value, strict=True))
        )
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{context}: {key} must be a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{context}: {key} must be bool, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(
                f"{context}: {key} must be int, got {value!r}{_text_number_hint(tp, value)}"
            )
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(
                f"{context}: {key} must be float, got {value!r}{_text_number_hint(tp, value)}"
            )
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{context}: {key} must be str, got {value!r}")
        return value
    if tp is Path:
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"{context}: {key} must be a path, got {value!r}")
        return Path(value)
    raise ConfigError(f"{context}: {key} has an unsupported type {_type_name(tp)}")


def to_dict(config: Any) -> dict[str, Any]:
    """Plain-data view of a config dataclass (tuples -> lists, paths -> str), YAML/JSON safe."""
    return _plain(dataclasses.asdict(config))


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def to_yaml(config: Any) -> str:
    """The resolved config as YAML text (keys in field order)."""
    data = to_dict(config) if dataclasses.is_dataclass(config) else _plain(config)
    return yaml.safe_dump(data, sort_keys=False)


def config_hash(config: Any, length: int = 12) -> str:
    """Stable short hash of a config (dataclass or mapping) via canonical JSON."""
    data = to_dict(config) if dataclasses.is_dataclass(config) else _plain(config)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:length]


def has_field(cls: Any, dotted: str) -> bool:
    """Whether dataclass ``cls`` has the (nested) field ``dotted`` (``"data.image_size"``)."""
    for part in dotted.split("."):
        if not dataclasses.is_dataclass(cls):
            return False
        if part not in {f.name for f in dataclasses.fields(cls)}:
            return False
        cls = typing.get_type_hints(cls)[part]
    return True


def fill_num_classes(config: T, k: int) -> T:
    """Set every field named ``num_classes`` that is 0 ("from the data") to ``k``, at any depth.

    Class-aware methods (e.g. MDD-Net's memory) size parts by the number of training categories;
    the runner and the CLI call this once the category subset is known.
    """
    changes = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name == "num_classes" and value == 0:
            changes[f.name] = k
        elif dataclasses.is_dataclass(value):
            filled = fill_num_classes(value, k)
            if filled is not value:
                changes[f.name] = filled
    return dataclasses.replace(config, **changes) if changes else config


def num_classes_fields(config: Any, prefix: str = "") -> dict[str, int]:
    """Every field named ``num_classes`` of ``config`` at any depth: dotted key -> value."""
    found = {}
    for f in dataclasses.fields(config):
        value, key = getattr(config, f.name), f"{prefix}{f.name}"
        if f.name == "num_classes":
            found[key] = value
        elif dataclasses.is_dataclass(value):
            found.update(num_classes_fields(value, f"{key}."))
    return found


def check_num_classes(config: Any, k: int) -> None:
    """Refuse a config whose class-aware parts are not sized for exactly ``k`` categories.

    Sizing a method from its data has one way: `fill_num_classes` at build time (the runner, the
    CLI and ``adbench.create(..., num_classes=k)`` call it), checked here when training starts.
    Too few classes cannot hold the data; too many leave parts that no training image supervises
    but that are read at test time.
    """
    for key, value in num_classes_fields(config).items():
        if value == 0:
            raise ConfigError(
                f"{key} is 0 (from the data) but the method was built before the data was known; "
                f"build it with adbench.create(name, preset, num_classes={k}) for the {k} "
                f"training categories"
            )
        if value != k:
            raise ConfigError(
                f"{key}={value} but the training data has {k} categories; set {key} to {k} (or "
                f"0 and build with num_classes={k}): "
                + (
                    "fewer classes than categories cannot hold them"
                    if value < k
                    else "the extra classes would never be trained but would be read at test time"
                )
            )
