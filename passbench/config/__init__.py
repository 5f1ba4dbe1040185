"""Experiment configs: frozen dataclasses are the schema, YAML holds the values.

A config file is YAML (read with ``yaml.safe_load``) that may name one or more bases::

    _base_: [../_base_/mot_sample.yaml, ../_base_/light.yaml]   # relative to this file
    method: {name: pass_p, params: {patch: 8}}

Bases are loaded depth-first and deep-merged in order, then the file itself on top (dicts merge key
by key, everything else replaces), as fvcore/mmcv ``_BASE_`` configs do. Dotted ``key=value``
overrides from the command line go on last; their values are parsed as YAML scalars/lists and
type-checked against the dataclass fields. An unknown key or a value of the wrong type raises
:class:`ConfigError` naming the key and the file (or ``override``) that set it.

The fully resolved config (:func:`to_dict`) is a plain dict stored in every record.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Union

import yaml

from passbench.config.schema import (ConfigError, DatasetCfg, EvalCfg, ExperimentCfg, MethodCfg,  # noqa: F401
                                     ModelCfg, SpeedCfg, TrainCfg)
from passbench.paths import REPO_ROOT

CONFIGS = REPO_ROOT / "configs"


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def _merge(dst: dict, src: dict, origin: str, sources: dict[str, str], prefix: str = "") -> None:
    """Deep-merge ``src`` into ``dst`` in place, recording which file set each dotted key."""
    for k, v in src.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _merge(dst[k], v, origin, sources, key + ".")
        else:
            dst[k] = _deepcopy(v)
            _mark(v, key, origin, sources)


def _mark(v: Any, key: str, origin: str, sources: dict[str, str]) -> None:
    sources[key] = origin
    if isinstance(v, dict):
        for k2, v2 in v.items():
            _mark(v2, f"{key}.{k2}", origin, sources)


def _deepcopy(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _deepcopy(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_deepcopy(x) for x in v]
    return v


def _load_tree(path: Path, sources: dict[str, str], stack: tuple[Path, ...] = ()) -> dict[str, Any]:
    path = path.resolve()
    if path in stack:
        raise ConfigError(f"{path}: _base_ cycle: {' -> '.join(map(str, stack + (path,)))}")
    data = _read_yaml(path)
    bases = data.pop("_base_", [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: _base_ must be a path or a list of paths")
    merged: dict[str, Any] = {}
    for b in bases:
        base_sources: dict[str, str] = {}
        _merge(merged, _load_tree(path.parent / b, base_sources, stack + (path,)), "", {})
        sources.update(base_sources)  # keys set by a base keep that base file as their origin
    _merge(merged, data, str(path), sources)
    return merged


def parse_override(text: str) -> tuple[str, Any]:
    """``"method.params.patch=8"`` -> ``("method.params.patch", 8)`` (value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not p for p in key.split(".")):
        raise ConfigError(f"override {text!r}: bad key {key!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override {text!r}: value is not valid YAML: {e}") from None
    return key, value


def _set_dotted(tree: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for p in parts[:-1]:
        nxt = node.get(p)
        if nxt is None:
            nxt = node[p] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"override {key}: '{p}' is not a section")
        node = nxt
    node[parts[-1]] = value


# ----------------------------------------------------------------------------------------------
# type checking against the dataclasses


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str, sources: dict[str, str]) -> Any:
    """Check ``value`` against the annotation ``tp``; return it in the dataclass's own types."""
    where = sources.get(key) or _nearest_source(key, sources)

    def fail(msg: str) -> ConfigError:
        return ConfigError(f"{where}: key '{key}': {msg}")

    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise fail(f"expected a mapping (section {_type_name(tp)}), got {value!r}")
        return _build(tp, value, key + ".", sources)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise fail(f"must not be null (expected {_type_name(tp)})")
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key, sources)
            except ConfigError as e:
                errors.append(str(e))
        if len(errors) == 1:  # Optional[X]: X's own message is the clearest
            raise ConfigError(errors[0])
        raise fail(f"expected {' or '.join(_type_name(a) for a in args)}, got {value!r}")
    if tp is Any:
        return value
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise fail(f"expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{key}[{i}]", {**sources, f"{key}[{i}]": where}) for i, v in enumerate(value))
        if len(value) != len(args):
            raise fail(f"expected a list of {len(args)} items, got {value!r}")
        return tuple(
            _coerce(v, a, f"{key}[{i}]", {**sources, f"{key}[{i}]": where}) for i, (v, a) in enumerate(zip(value, args))
        )
    if origin is dict:
        if not isinstance(value, dict):
            raise fail(f"expected a mapping, got {value!r}")
        return _deepcopy(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise fail(f"expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail(f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail(f"expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise fail(f"expected a string, got {value!r}")
        return value
    raise fail(f"unsupported field type {tp!r}")  # pragma: no cover - schema bug


def _nearest_source(key: str, sources: dict[str, str]) -> str:
    parts = key.split(".")
    while parts:
        parts.pop()
        k = ".".join(parts)
        if k in sources:
            return sources[k]
    return "<defaults>"


def _build(cls: type, data: dict[str, Any], prefix: str, sources: dict[str, str]) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for k in data:
        if k not in names:
            key = f"{prefix}{k}"
            where = sources.get(key) or _nearest_source(key, sources)
            raise ConfigError(
                f"{where}: unknown key '{key}' (section {cls.__name__} has: {', '.join(sorted(names))})"
            )
    kwargs = {k: _coerce(v, hints[k], f"{prefix}{k}", sources) for k, v in data.items()}
    return cls(**kwargs)


# ----------------------------------------------------------------------------------------------
# public API


def config_id(path: str | Path) -> str:
    """``configs/table3/pass_p.yaml`` -> ``table3/pass_p`` (the path below ``configs/`` without suffix)."""
    p = Path(path).resolve()
    try:
        rel = p.relative_to(CONFIGS.resolve())
    except ValueError:
        rel = Path(p.name)
    return str(rel.with_suffix("")).replace("\\", "/")


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentCfg:
    """Load a YAML config with its ``_base_`` chain and dotted overrides, type-checked.

    Args:
        path: the config file.
        overrides: ``["key.sub=value", ...]``; values are parsed as YAML.

    Returns:
        The frozen :class:`ExperimentCfg`; ``name`` defaults to :func:`config_id` of ``path``.

    Raises:
        ConfigError: unknown key, wrong type, bad YAML, missing file, ``_base_`` cycle, or a value outside
            its range or set (``passbench.config.check``); the message names the key and the file (or
            ``override``) that set it.
    """
    path = Path(path)
    sources: dict[str, str] = {}
    tree = _load_tree(path, sources)
    for text in overrides:
        key, value = parse_override(text)
        _set_dotted(tree, key, value)
        parts = key.split(".")
        for i in range(1, len(parts)):  # so an unknown section is blamed on the override too
            sources.setdefault(".".join(parts[:i]), f"override {text!r}")
        _mark(value, key, f"override {text!r}", sources)
    tree.setdefault("name", config_id(path))
    cfg = _build(ExperimentCfg, tree, "", sources)
    from passbench.config.check import check_config  # noqa: PLC0415 - value checks need the registries

    check_config(cfg, lambda key: sources.get(key.split("[")[0]) or _nearest_source(key.split("[")[0], sources))
    return cfg


def from_dict(data: dict[str, Any], origin: str = "<dict>") -> ExperimentCfg:
    """Rebuild a config from :func:`to_dict` output (e.g. the ``config`` stored in a record)."""
    sources: dict[str, str] = {}
    _mark(data, "", origin, sources)
    sources = {k.lstrip("."): v for k, v in sources.items()}
    return _build(ExperimentCfg, _deepcopy(data), "", sources)


def normalized(config: dict[str, Any]) -> dict[str, Any] | None:
    """A resolved config read from a record, re-resolved through today's schema (keys added since get their
    defaults), so that it compares equal to the same experiment resolved now; None if it no longer fits."""
    try:
        return to_dict(from_dict(config, "<record>"))
    except ConfigError:
        return None


def to_dict(cfg: Any) -> dict[str, Any]:
    """The resolved config as plain JSON-able data (tuples become lists)."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        return v

    return plain(cfg)


def find_configs(table: str | int, root: str | Path = CONFIGS) -> list[Path]:
    """Config files of a table/figure folder, sorted: ``find_configs(3)`` -> ``configs/table3/*.yaml``."""
    name = f"table{table}" if isinstance(table, int) or str(table).isdigit() else str(table)
    folder = Path(root) / name
    if not folder.is_dir():
        raise ConfigError(f"no config folder {folder}")
    return sorted(folder.glob("*.yaml"))
