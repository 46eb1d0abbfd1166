"""A plain name -> class registry, filled by the project's own modules and by third-party packages through a
Python entry-point group (OGBench `impls/` and d3rlpy style)."""

from __future__ import annotations

import difflib
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from bench.errors import BenchError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, what: str, group: str):
        self.what = what
        self.group = group  # entry-point group third-party plugins register under
        self._items: dict[str, T] = {}
        self._loaded_plugins = False

    def register(self, name: str):
        def deco(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise BenchError(f"{self.what} '{name}' is registered twice")
            self._items[name] = obj
            return obj

        return deco

    def _load_plugins(self) -> None:
        if self._loaded_plugins:
            return
        self._loaded_plugins = True
        for ep in entry_points(group=self.group):
            try:
                obj = ep.load()
            except Exception as e:
                raise BenchError(f"{self.what} plugin '{ep.name}' ({ep.value}) failed to load: {e}") from None
            self._items.setdefault(ep.name, obj)

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._items)

    def get(self, name: str) -> T:
        self._load_plugins()
        if name not in self._items:
            close = difflib.get_close_matches(name, list(self._items), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(self.names()) or 'none'}"
            raise BenchError(f"unknown {self.what} '{name}'{hint}")
        return self._items[name]
