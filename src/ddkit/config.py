"""Typed, strict configuration: dataclasses built from YAML presets plus `key=value` overrides.

An unknown key or a value of the wrong type is a `DDKitError` naming the valid choices.
"""

from __future__ import annotations

import dataclasses
import re
import types
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from ddkit.errors import DDKitError

C = TypeVar("C")


class _Int(int):
    """An int that remembers how it was typed, so a string field given `007` keeps "007"."""

    source: str


class _Float(float):
    source: str


class YamlLoader(yaml.SafeLoader):
    """Safe YAML with the scalars people type, not YAML 1.1's: numbers in every usual spelling
    (1e-3, 1E+5, .5, 5., 1_000, 0x1f, 0o17, 0b101, inf, -.inf, nan) and booleans only as
    true/false; yes/no/on/off/y/n and dates stay strings (a prompt word "on" must not become True)."""


_BOOL, _INT, _FLOAT = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
_RETYPED = (_BOOL, _INT, _FLOAT, "tag:yaml.org,2002:timestamp")  # dates stay strings too
YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _RETYPED]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
YamlLoader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
YamlLoader.add_implicit_resolver(
    _INT, re.compile(r"^[-+]?(?:[0-9][0-9_]*|0x[0-9a-fA-F_]+|0o[0-7_]+|0b[01_]+)$"), list("-+0123456789"))
YamlLoader.add_implicit_resolver(
    _FLOAT,
    re.compile(r"^(?:[-+]?(?:[0-9][0-9_]*\.[0-9_]*|\.[0-9][0-9_]*|[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)?"
               r"|[-+]?\.?(?:inf|Inf|INF)|\.?(?:nan|NaN|NAN))$"),
    list("-+.0123456789iInN"),
)


def _construct_int(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    text = loader.construct_scalar(node)
    digits = text.replace("_", "")
    number = _Int(int(digits, 0) if digits.lstrip("+-")[:2].lower() in ("0x", "0o", "0b") else int(digits, 10))
    number.source = text
    return number


def _construct_float(loader: yaml.SafeLoader, node: yaml.Node) -> float:
    text = loader.construct_scalar(node)
    plain = text.replace("_", "").lower()
    number = _Float(plain.replace(".", "") if plain.lstrip("+-.") in ("inf", "nan") else plain)
    number.source = text
    return number


YamlLoader.add_constructor(_INT, _construct_int)
YamlLoader.add_constructor(_FLOAT, _construct_float)


def parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=YamlLoader)  # noqa: S506 (YamlLoader is a SafeLoader)


def load_yaml(path: Path) -> dict[str, Any]:
    try:
        data = parse_yaml(Path(path).read_text())
    except FileNotFoundError:
        raise DDKitError(f"config file {path} does not exist") from None
    except yaml.YAMLError as err:
        raise DDKitError(f"config file {path} is not valid YAML: {str(err).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DDKitError(f"config file {path} must hold a mapping of keys to values")
    return data


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Turn `["a.b=1", "--c=x"]` into the nested mapping `{"a": {"b": 1}, "c": "x"}`."""
    nested: dict[str, Any] = {}
    for item in items:
        text = item[2:] if item.startswith("--") else item
        if "=" not in text:
            raise DDKitError(f"override {item!r} must look like --key=value")
        dotted, raw = text.split("=", 1)
        try:
            value = parse_yaml(raw) if raw != "" else ""
        except yaml.YAMLError as err:
            raise DDKitError(f"override {item!r} is not a valid value ({str(err).splitlines()[0]})") from None
        *parents, leaf = dotted.replace("-", "_").split(".")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise DDKitError(f"override {item!r} sets a key inside a plain value")
        node[leaf] = value
    return nested


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def build(cls: type[C], data: dict[str, Any] | None, where: str = "") -> C:
    """Build dataclass `cls` from `data`, checking every key and type."""
    data = data or {}
    if not isinstance(data, dict):
        raise DDKitError(f"{where or cls.__name__} must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise DDKitError(
            f"unknown key {_join(where, unknown[0])!r}; valid keys: {', '.join(sorted(fields))}"
        )
    hints = get_type_hints(cls)
    kwargs = {name: _coerce(hints[name], _over_default(fields[name], value), _join(where, name)) for name, value in data.items()}
    missing = [
        name
        for name, f in fields.items()
        if name not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise DDKitError(f"missing key {_join(where, missing[0])!r}")
    try:
        return cls(**kwargs)
    except ValueError as err:
        raise DDKitError(f"{where or cls.__name__}: {err}") from None


def _over_default(f: dataclasses.Field, value: Any) -> Any:
    """A partial mapping for a nested config fills in from the field's own default, not the nested
    class's: a method whose default sampler differs keeps it when an option sets only `steps`."""
    if isinstance(value, dict) and f.default_factory is not dataclasses.MISSING:
        default = f.default_factory()
        if dataclasses.is_dataclass(default):
            return merge(to_dict(default), value)
    return value


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


# Field metadata for options added after results were stored: left out of `hash_dict` while they
# hold their default, so adding an option does not orphan cached teachers, priors or results.
ADDED_OPTION = {"omit_default_from_hash": True}


def hash_dict(config: Any) -> Any:
    """`to_dict` for content hashes: fields marked ADDED_OPTION are omitted when at their default."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        out = {}
        for item in dataclasses.fields(config):
            value = getattr(config, item.name)
            if item.metadata.get("omit_default_from_hash") and value == _default_of(item):
                continue
            out[item.name] = hash_dict(value)
        return out
    if isinstance(config, (list, tuple)):
        return [hash_dict(v) for v in config]
    if isinstance(config, dict):
        return {k: hash_dict(v) for k, v in config.items()}
    return config


def _as_typed(value: Any) -> Any:
    """A scalar as the text it was typed as, for string fields: a folder called 2024, a prompt `true`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return getattr(value, "source", value)


def _default_of(item: dataclasses.Field) -> Any:
    return item.default_factory() if item.default_factory is not dataclasses.MISSING else item.default


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _type_name(hint: Any) -> str:
    if get_origin(hint) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(hint))
    return getattr(hint, "__name__", str(hint))


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = get_origin(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        options = get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(option, value, where)
            except DDKitError as err:
                errors.append(str(err))
        raise DDKitError(errors[0] if len(errors) == 1 else f"{where}: {value!r} fits none of {hint}")
    if origin is Literal:
        if value not in get_args(hint):
            raise DDKitError(
                f"{where} = {value!r} is not valid; choose one of: "
                + ", ".join(str(a) for a in get_args(hint))
            )
        return value
    if origin in (list, tuple):
        if isinstance(value, dict):
            raise DDKitError(f"{where} must be a list, got {value!r}")
        values = value if isinstance(value, (list, tuple)) else [value]  # `--ipcs=10` means [10]
        (item_hint, *_) = get_args(hint) or (Any,)
        items = [_coerce(item_hint, v, f"{where}[{i}]") for i, v in enumerate(values)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise DDKitError(f"{where} must be a mapping, got {value!r}")
        _, value_hint = get_args(hint) or (Any, Any)
        return {k: _coerce(value_hint, v, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        return build(hint, value, where)
    if hint is bool:
        if not isinstance(value, bool):
            raise DDKitError(f"{where} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, float) and value.is_integer():  # 1e3 is an integer too
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise DDKitError(f"{where} must be an integer, got {value!r}")
        return int(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DDKitError(f"{where} must be a number, got {value!r}")
        return float(value)
    if hint in (str, Path):
        value = _as_typed(value)
        if not isinstance(value, (str, Path)) or (hint is str and isinstance(value, Path)):
            raise DDKitError(f"{where} must be a {'string' if hint is str else 'path'}, got {value!r}")
        return hint(value)
    raise TypeError(f"config type {_type_name(hint)} at {where} is not supported")
