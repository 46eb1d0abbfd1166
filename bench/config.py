"""Config dataclasses that round-trip through JSON and refuse unknown or mistyped keys with one clear line.

Every augmenter and trainer config is a dataclass deriving from `Config` (d3rlpy style): `to_dict()` gives the
full canonical config, `from_dict()` rebuilds it, checking each key and type.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import re
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


def _interval(spec: str) -> tuple[float, float, bool, bool]:
    m = re.fullmatch(r"\s*([\[(])\s*([^,]+?)\s*,\s*([^\])]+?)\s*([\])])\s*", spec)
    if not m:
        raise ValueError(f"bad range {spec!r}")
    return float(m.group(2)), float(m.group(3)), m.group(1) == "[", m.group(4) == "]"


def _in_interval(value: float, spec: str) -> bool:
    lo, hi, lo_closed, hi_closed = _interval(spec)
    return (value > lo or (lo_closed and value == lo)) and (value < hi or (hi_closed and value == hi))


@dataclasses.dataclass
class Config:
    """Base for augmenter and trainer configs.

    `ranges` gives every numeric field its valid interval ("(0, 1]", "[1, inf)"; for a list, every element, and
    the list may not be empty); `from_dict` refuses a value outside it, and NaN or inf anywhere, before `check`.
    """

    ranges: typing.ClassVar[dict[str, str]] = {}
    # Options added after results were recorded without them: name -> the value that does what the code did
    # before the option existed.  At that value the option is left out of the config's identity (run ids and
    # cache keys, `identity`), so adding one keeps the id of every earlier result and archived run; any other
    # value is a new identity.  The stored config still names every option.
    added_later: typing.ClassVar[dict[str, Any]] = {}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def _merged(cls, attr: str) -> dict[str, Any]:
        """A class-level dict merged along the MRO (a subclass's entries win)."""
        out: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            out.update(klass.__dict__.get(attr, {}))
        return out

    @classmethod
    def all_added_later(cls) -> dict[str, Any]:
        return cls._merged("added_later")

    @classmethod
    def identity(cls, config: dict[str, Any]) -> dict[str, Any]:
        """`config` (a `to_dict()`) as it is hashed: without the `added_later` options at their old values."""
        old = cls.all_added_later()
        return {k: v for k, v in config.items() if not (k in old and v == old[k])}

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
        obj.check_ranges(where)
        obj.check(where)
        return obj

    @classmethod
    def all_ranges(cls) -> dict[str, str]:
        return cls._merged("ranges")

    def check_ranges(self, where: str) -> None:
        for key, spec in self.all_ranges().items():
            value = getattr(self, key)
            if value is None:
                continue
            values = list(value) if isinstance(value, (list, tuple)) else [value]
            if isinstance(value, (list, tuple)) and not values:
                raise BenchError(f"{where}: '{key}' must not be empty")
            for v in values:
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    continue
                if not math.isfinite(v) or not _in_interval(v, spec):
                    raise BenchError(f"{where}: '{key}' = {value!r} must be in {spec}")

    def check(self, where: str) -> None:
        """Range checks; subclasses extend this."""


def hashed_config(registry, name: Any, config: dict[str, Any]) -> dict[str, Any]:
    """`config` of the class registered as `name` in `registry`, as run ids and cache keys hash it
    (`Config.identity`); as it is for a name not (or no longer) registered."""
    if not isinstance(name, str):
        return config
    try:
        cls = registry.get(name)
    except BenchError:
        return config
    return cls.config_class.identity(config)
