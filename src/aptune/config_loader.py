"""Strict YAML → dataclass loading, with errors that name the file, line and key.

Configs are data: parsed with ``yaml.safe_load`` semantics (no tags, no code), mapped onto
typed dataclasses field by field. Unknown keys, wrong types and bad literal values are
reported before any work starts, as ``configs/demo.yaml:12: train.lr: expected a number,
got 'fast'``.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file that does not match its schema."""


def _node_lines(node: yaml.Node, path: tuple[str, ...], out: dict[tuple[str, ...], int]) -> None:
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = path + (str(key.value),)
            out[child] = key.start_mark.line + 1
            _node_lines(value, child, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, value in enumerate(node.value):
            _node_lines(value, path + (str(i),), out)


def read_yaml(path: str | Path) -> tuple[dict[str, Any], dict[tuple[str, ...], int]]:
    """Parse a YAML mapping safely; return it with a key-path → line-number map."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    try:
        data = yaml.safe_load(text)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}{line}: invalid YAML ({problem})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: the config must be a mapping of keys to values")
    lines: dict[tuple[str, ...], int] = {}
    if node is not None:
        _node_lines(node, (), lines)
    return data, lines


class ConfigSource:
    """Where a config came from, to name in errors: the file and each key's line, and the
    ``--set KEY=VALUE`` texts that replaced keys of it (an error under one names that option)."""

    def __init__(self, source: str, lines: Mapping[tuple[str, ...], int],
                 overrides: Mapping[tuple[str, ...], str] | None = None) -> None:
        self.source = source
        self.lines = lines
        self.overrides = dict(overrides or {})

    def error(self, path: tuple[str, ...], message: str) -> ConfigError:
        for key, text in self.overrides.items():
            if path[:len(key)] == key:
                return ConfigError(f"--set {text}: {'.'.join(path)}: {message}")
        # a section's own check failed (e.g. RoundsConfig's): name the options that set keys in it
        inside = [text for key, text in self.overrides.items() if key[:len(path)] == path]
        if inside:
            return ConfigError(f"--set {' --set '.join(inside)}: {'.'.join(path) or 'config'}: {message}")
        line = None
        for cut in range(len(path), -1, -1):
            line = self.lines.get(path[:cut])
            if line is not None:
                break
        where = f"{self.source}:{line}" if line else self.source
        if not path:
            return ConfigError(f"{where}: {message}")
        return ConfigError(f"{where}: {'.'.join(path)}: {message}")


def _describe(value: Any) -> str:
    return repr(value) if not isinstance(value, (dict, list)) else type(value).__name__


def _convert(tp: Any, value: Any, path: tuple[str, ...], ctx: ConfigSource) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(option, value, path, ctx)
            except ConfigError as exc:
                errors.append(str(exc).rsplit(": ", 1)[-1])
        raise ctx.error(path, " or ".join(errors))
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise ctx.error(path, f"must be one of {', '.join(map(str, allowed))}, got {_describe(value)}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        value = _section_from_scalar(tp, value)
        if not isinstance(value, Mapping):
            raise ctx.error(path, f"expected a mapping, got {_describe(value)}")
        return build(tp, value, ctx=ctx, path=path)
    if origin in (list, tuple) or tp in (list, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ctx.error(path, f"expected a list, got {_describe(value)}")
        args = get_args(tp)
        item_tp = args[0] if args else Any
        items = [_convert(item_tp, v, path + (str(i),), ctx) for i, v in enumerate(value)]
        return tuple(items) if (origin is tuple or tp is tuple) else items
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise ctx.error(path, f"expected a mapping, got {_describe(value)}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ctx.error(path, f"expected true or false, got {_describe(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ctx.error(path, f"expected an integer, got {_describe(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            # YAML reads 2e-4 as a string (no dot): accept numeric strings
            if isinstance(value, str):
                try:
                    return float(value)
                except ValueError:
                    pass
            raise ctx.error(path, f"expected a number, got {_describe(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ctx.error(path, f"expected a string, got {_describe(value)}")
        return value
    return value


def _default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def _shallow(instance: Any) -> dict[str, Any]:
    """Field values of a dataclass instance, one level deep (nested ones stay objects)."""
    return {f.name: getattr(instance, f.name) for f in dataclasses.fields(instance) if f.init}


def build(cls: type[T], data: Mapping[str, Any], *, ctx: ConfigSource | None = None,
          path: tuple[str, ...] = (), source: str = "<config>") -> T:
    """Construct dataclass ``cls`` from ``data``, strictly: unknown keys and bad types fail."""
    ctx = ctx or ConfigSource(source, {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        known = ", ".join(sorted(fields))
        raise ctx.error(path + (str(unknown[0]),), f"unknown key (known keys: {known})")
    kwargs = {}
    for name, value in data.items():
        default = _default_of(fields[name])
        value = _section_from_scalar(type(default), value)
        if dataclasses.is_dataclass(default) and isinstance(value, Mapping):
            # a nested section overrides only the keys it names; the rest keep their defaults
            kwargs[name] = build(type(default), {**_shallow(default), **value}, ctx=ctx, path=path + (name,))
        else:
            kwargs[name] = _convert(hints[name], value, path + (name,), ctx)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ctx.error(path, message) from None


def _scalar_key(tp: Any) -> str | None:
    """The key a section's short form sets: a dataclass may name a ``SCALAR_KEY`` and then be
    written as that key's value alone (``model: NAME`` = ``model: {name: NAME}``)."""
    return getattr(tp, "SCALAR_KEY", None) if dataclasses.is_dataclass(tp) else None


def _section_from_scalar(tp: Any, value: Any) -> Any:
    """``value`` as a section of type ``tp`` when it is that section's short form, else unchanged."""
    scalar_key = _scalar_key(tp)
    return {scalar_key: value} if scalar_key is not None and isinstance(value, str) else value


def expand_scalar_sections(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` with every short-form section written out (see ``_section_from_scalar``), so that
    ``--set model.dtype=bf16`` applies to a file that says ``model: NAME``."""
    out = dict(data)
    for f in dataclasses.fields(cls):
        if f.name not in out or not f.init:
            continue
        default = _default_of(f)
        value = _section_from_scalar(type(default), out[f.name])
        if dataclasses.is_dataclass(default) and isinstance(value, Mapping):
            value = expand_scalar_sections(type(default), value)
        out[f.name] = value
    return out


def _set_path(cls: type, path: tuple[str, ...]) -> tuple[str, ...]:
    """``--set model=NAME`` sets the name of a short-form section, keeping its other keys."""
    tp: Any = cls
    for part in path:
        fields = {f.name: f for f in dataclasses.fields(tp)} if dataclasses.is_dataclass(tp) else {}
        if part not in fields:
            return path
        tp = type(_default_of(fields[part]))
    scalar_key = _scalar_key(tp)
    return path + (scalar_key,) if scalar_key else path


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` applied: mappings merge key by key, anything else replaces."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out



def parse_set(text: str) -> tuple[tuple[str, ...], Any]:
    """``"train.lr=1e-4"`` -> ``(("train", "lr"), 0.0001)``: the value is read as a YAML scalar
    or flow collection (``true``, ``3``, ``[a, b]``), so it means what it would in the file."""
    key, sep, raw = text.partition("=")
    path = tuple(part.strip() for part in key.split("."))
    if not sep or not all(path):
        raise ConfigError(f"--set {text}: expected KEY=VALUE with a dotted key, e.g. train.lr=1e-4")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        raise ConfigError(f"--set {text}: the value is not valid YAML") from None
    return path, value


def apply_sets(data: dict[str, Any], sets: list[str] | tuple[str, ...],
               schema: type | None = None) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    """``data`` with every ``--set KEY=VALUE`` applied (later ones win), and the replaced key
    paths with the option text that set them (for errors). With the ``schema`` dataclass, a
    scalar set on a short-form section sets its ``SCALAR_KEY`` (``--set model=NAME``)."""
    out = copy.deepcopy(data)
    where: dict[tuple[str, ...], str] = {}
    for text in sets:
        path, value = parse_set(text)
        if schema is not None and not isinstance(value, Mapping):
            path = _set_path(schema, path)
        node = out
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"--set {text}: {'.'.join(path[:i + 1])} is not a section")
            node = child
        node[path[-1]] = value
        where[path] = text
    return out, where


def load_config(cls: type[T], path: str | Path | None, sets: list[str] | tuple[str, ...] = ()) -> T:
    """Read a YAML file (None: no file, the schema's defaults) into dataclass ``cls``, with
    ``--set KEY=VALUE`` overrides applied; errors name the file and line, or the option."""
    data, lines = read_yaml(path) if path is not None else ({}, {})
    data, overrides = apply_sets(expand_scalar_sections(cls, data), sets, schema=cls)
    return build(cls, data, ctx=ConfigSource(str(path) if path is not None else "<defaults>", lines, overrides))
