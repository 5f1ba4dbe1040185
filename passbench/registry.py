"""A tiny name -> builder registry (one per kind: models, gates, methods, datasets, trackers).

Usage::

    MODELS = Registry("models")

    @MODELS.register("fairmot_dla34")
    def fairmot_dla34(**kw): ...

    MODELS.build("fairmot_dla34", pretrained=False)
    MODELS.names("fairmot_*")
"""

from __future__ import annotations

import difflib
import fnmatch
from typing import Any, Callable, Iterator


class Registry:
    """Maps names to builder callables. Duplicate names raise; unknown names suggest close ones."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, Callable[..., Any]] = {}

    def register(self, name: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator registering ``fn`` under ``name`` (default: ``fn.__name__``)."""

        def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
            key = name or fn.__name__
            if key in self._items:
                raise ValueError(f"{self.kind}: '{key}' is already registered")
            self._items[key] = fn
            return fn

        return deco

    def get(self, name: str) -> Callable[..., Any]:
        try:
            return self._items[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._items), n=3)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise KeyError(
                f"unknown {self.kind} '{name}'{hint} (known: {', '.join(sorted(self._items)) or 'none'})"
            ) from None

    def build(self, name: str, /, **kwargs: Any) -> Any:
        return self.get(name)(**kwargs)

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching a glob pattern, sorted."""
        return sorted(n for n in self._items if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def __len__(self) -> int:
        return len(self._items)
