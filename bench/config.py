"""Config dataclasses that round-trip through JSON and refuse unknown or mistyped keys with one clear line.

Every augmenter and trainer config is a dataclass deriving from `Config` (d3rlpy style): `to_dict()` gives the
full canonical config, `from_dict()` rebuilds it, checking each key and type.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import typing
from typing import Any, Literal, get_args, get_origin

from bench.errors import BenchError


def _check_type(where: str, key: str, value: Any, tp: Any) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        errors = []
        for arm in get_args(tp):
            if arm is type(None):
                if value is None:
                    return None
                continue
            try:
                return _check_type(where, key, value, arm)
            except BenchError as e:
                errors.append(str(e))
        raise BenchError(f"{where}: '{key}' = {value!r} has the wrong type (expected {tp})")
    if origin is Literal:
        if value not in get_args(tp):
            raise BenchError(f"{where}: '{key}' = {value!r} is not one of {', '.join(map(repr, get_args(tp)))}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BenchError(f"{where}: '{key}' = {value!r} must be a number")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise BenchError(f"{where}: '{key}' = {value!r} must be an integer")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise BenchError(f"{where}: '{key}' = {value!r} must be true or false")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise BenchError(f"{where}: '{key}' = {value!r} must be a string")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise BenchError(f"{where}: '{key}' = {value!r} must be a list")
        (arm, *_) = get_args(tp) or (Any,)
        return origin(_check_type(where, key, v, arm) for v in value)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise BenchError(f"{where}: '{key}' = {value!r} must be a mapping")
        return dict(value)
    return value


@functools.lru_cache(maxsize=None)
def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


@dataclasses.dataclass
class Config:
    """Base for augmenter and trainer configs."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, where: str | None = None):
        where = where or cls.__name__
        data = dict(data or {})
        hints = _hints(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        kwargs = {}
        for key, value in data.items():
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else f" (keys: {', '.join(names)})"
                raise BenchError(f"{where}: unknown key '{key}'{hint}")
            kwargs[key] = _check_type(where, key, value, hints[key])
        obj = cls(**kwargs)
        obj.check(where)
        return obj

    def check(self, where: str) -> None:
        """Range checks; subclasses extend this."""
