"""Plain YAML data to typed frozen dataclasses and back: the conversion under pipeline.config.

build(tp, value, key, problems) converts `value` to `tp` (dataclasses, unions, tuples, dicts, scalars),
appending one message per problem with its dotted key instead of stopping at the first.
apply_overrides sets `dotted.key=yaml_value` pairs; config_to_dict gives the plain form back.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from typing import Any

import yaml

from pipeline.errors import ConfigError


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Return a copy of `data` with each `dotted.key=yaml_value` set."""
    problems = []
    data = _deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            problems.append(f"override {item!r}: expected key=value")
            continue
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            value = raw
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                problems.append(f"override {item!r}: {part} is not a section")
                break
            node = child
        else:
            node[parts[-1]] = value
    if problems:
        raise ConfigError(problems, source="overrides")
    return data


def config_to_dict(config: Any) -> Any:
    """Plain-data form of a config (or section), for hashing and for saving next to artifacts."""
    if dataclasses.is_dataclass(config):
        return {f.name: config_to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, (list, tuple)):
        return [config_to_dict(v) for v in config]
    if isinstance(config, dict):
        return {k: config_to_dict(v) for k, v in config.items()}
    return config


_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")  # a number YAML 1.1 may leave a string


def _deepcopy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deepcopy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deepcopy(v) for v in value]
    return value


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def build(tp: Any, value: Any, key: str, problems: list[str]) -> Any:
    """Convert plain YAML data to `tp`, appending a message per problem; returns a best-effort value."""
    where = key or "config"
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            problems.append(f"{where}: expected a mapping, got {type(value).__name__}")
            return None
        hints = typing.get_type_hints(tp)
        fields = {f.name: f for f in dataclasses.fields(tp)}
        for unknown in sorted(set(value) - set(fields)):
            near = [n for n in fields if n.startswith(str(unknown)[:3])]
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            problems.append(f"{key + '.' if key else ''}{unknown}: unknown key{hint}")
        kwargs = {}
        for name, f in fields.items():
            sub = f"{key}.{name}" if key else name
            if name in value:
                kwargs[name] = build(hints[name], value[name], sub, problems)
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                problems.append(f"{sub}: required key is missing")
        try:
            return tp(**kwargs)
        except TypeError:
            return None
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            trial: list[str] = []
            built = build(arg, value, key, trial)
            if not trial:
                return built
        problems.append(f"{where}: expected {' or '.join(_type_name(a) for a in args)}, got {value!r}")
        return None
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            problems.append(f"{where}: expected a list, got {value!r}")
            return ()
        (item_tp, *_rest) = typing.get_args(tp)
        return tuple(build(item_tp, v, f"{where}[{i}]", problems) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            problems.append(f"{where}: expected a mapping, got {value!r}")
            return {}
        _, val_tp = typing.get_args(tp)
        return {str(k): build(val_tp, v, f"{where}.{k}", problems) for k, v in value.items()}
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
        return float(value)  # YAML 1.1 reads 1e-4 (no dot) as a string; it is meant as a number
    if tp is bool and not isinstance(value, bool):
        problems.append(f"{where}: expected true or false, got {value!r}")
        return None
    if tp is int and (isinstance(value, bool) or not isinstance(value, int)):
        problems.append(f"{where}: expected int, got {value!r}")
        return None
    if tp in (str, float) and not isinstance(value, tp):
        problems.append(f"{where}: expected {tp.__name__}, got {value!r}")
        return None
    return value
