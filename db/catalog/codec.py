"""The canonical JSON form of catalog records: dataclasses <-> dicts and lists."""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping
from dataclasses import fields
from typing import Any, Union, get_args, get_origin, get_type_hints

# --- canonical JSON ----------------------------------------------------------


def _to_json(value: Any) -> Any:
    """Dataclasses to dicts and tuples to lists, recursively."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_json(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, tuple | list):
        return [_to_json(item) for item in value]
    return value


def _from_json(target: Any, value: Any) -> Any:
    """Rebuild ``target`` (a record type, tuple, optional or scalar) from JSON."""
    origin = get_origin(target)
    if origin in (Union, types.UnionType):
        if value is None:
            return None
        (inner,) = [arg for arg in get_args(target) if arg is not type(None)]
        return _from_json(inner, value)
    if origin is tuple:
        if not isinstance(value, list):
            raise TypeError(f"expected a list, got {type(value).__name__}")
        item_type = get_args(target)[0]
        return tuple(_from_json(item_type, item) for item in value)
    if dataclasses.is_dataclass(target) and isinstance(target, type):
        if not isinstance(value, Mapping):
            raise TypeError(f"{target.__name__}: expected an object, got {type(value).__name__}")
        hints = get_type_hints(target)
        names = [f.name for f in fields(target)]
        unknown = set(value) - set(names)
        if unknown:
            raise ValueError(f"{target.__name__}: unknown keys {sorted(unknown)}")
        return target(**{name: _from_json(hints[name], value[name]) for name in names})
    if target is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if target in (str, int, bool, float) and not isinstance(value, target):
        raise TypeError(f"expected {target.__name__}, got {value!r}")
    if target is int and isinstance(value, bool):
        raise TypeError(f"expected int, got {value!r}")
    return value
