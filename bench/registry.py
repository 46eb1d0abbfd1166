"""A plain name -> class registry, filled by the project's own modules and by third-party packages through a
Python entry-point group (OGBench `impls/` and d3rlpy style)."""

from __future__ import annotations

import difflib
import importlib
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from bench.errors import BenchError

T = TypeVar("T")


class Registry(Generic[T]):
    """Each class is registered under its own `name` attribute (the one place a name is written).  The built-in
    modules are imported on the first look-up, not when the package is imported, so `bench --help` and commands
    that never train import none of them."""

    def __init__(self, what: str, group: str, modules: tuple[str, ...] = ()):
        self.what = what
        self.group = group  # entry-point group third-party plugins register under
        self.modules = modules  # built-in modules whose classes register themselves when imported
        self._items: dict[str, T] = {}
        self._loaded = False

    def register(self, obj: T) -> T:
        """Class decorator: registers `obj` under `obj.name`."""
        name = getattr(obj, "name", None)
        if not isinstance(name, str) or not name:
            raise BenchError(f"{self.what} {obj!r} has no `name` to register under")
        if name in self._items and self._items[name] is not obj:
            raise BenchError(f"{self.what} '{name}' is registered twice")
        self._items[name] = obj
        return obj

    def _load_plugins(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for module in self.modules:
            importlib.import_module(module)
        for ep in entry_points(group=self.group):
            try:
                obj = ep.load()
            except Exception as e:
                raise BenchError(f"{self.what} plugin '{ep.name}' ({ep.value}) failed to load: {e}") from None
            if getattr(obj, "name", ep.name) != ep.name:
                raise BenchError(f"{self.what} plugin '{ep.name}' ({ep.value}) names itself "
                                 f"'{getattr(obj, 'name')}'; the entry-point name and the class's `name` must agree")
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
