"""One registry mechanism for every pluggable kind of thing.

Datasets, models, pruning strategies, training strategies, regularizers and branches all use
`Registry`: register at the definition site with a decorator, look up with `get(name)` (whose error
lists the valid names), enumerate with `list()`. Outside packages register through the Python
entry-point group `open_lth_concave.<kind>` without editing this package: each entry point is a
module (or object) that is imported, and importing it runs its `@register` decorators.
"""
from __future__ import annotations

import re
from importlib import metadata
from typing import Callable, Generic, Iterator, TypeVar

from open_lth_concave.foundations.errors import UserError

T = TypeVar("T")


class UnknownNameError(UserError, ValueError):
    """A name that is not registered; the message lists what is allowed."""


class Registry(Generic[T]):
    """Name -> object, plus optional name patterns (e.g. `cifar_resnet_<D>`) resolved by a factory."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._patterns: list[tuple[re.Pattern, str, Callable[[re.Match], T]]] = []
        self._entry_points_loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            self.add(name, obj)
            return obj
        return decorator

    def add(self, name: str, obj: T) -> None:
        if not name or not re.fullmatch(r"[A-Za-z0-9_]+", name):
            raise ValueError(f"{self.kind} name {name!r} must be letters, digits and underscores")
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = obj

    def register_pattern(self, regex: str, shown_as: str) -> Callable[[Callable[[re.Match], T]], Callable[[re.Match], T]]:
        """Register a family of names (e.g. every `mnist_lenet_<w1>_<w2>...`) built by a factory."""
        def decorator(factory: Callable[[re.Match], T]) -> Callable[[re.Match], T]:
            if any(shown == shown_as for _, shown, _ in self._patterns):
                raise ValueError(f"{self.kind} pattern {shown_as!r} is already registered")
            self._patterns.append((re.compile(regex), shown_as, factory))
            return factory
        return decorator

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        group = f"open_lth_concave.{self.kind.replace(' ', '_')}s"
        for ep in metadata.entry_points(group=group):
            ep.load()

    def get(self, name: str) -> T:
        self._load_entry_points()
        if name in self._items:
            return self._items[name]
        for regex, _, factory in self._patterns:
            match = regex.fullmatch(name or "")
            if match:
                try:
                    return factory(match)
                except ValueError as e:
                    raise UnknownNameError(f"invalid {self.kind} {name!r}: {e}") from None
        raise UnknownNameError(f"unknown {self.kind} {name!r}; valid: {', '.join(self.names())}")

    def __contains__(self, name: str) -> bool:
        try:
            self.get(name)
            return True
        except UnknownNameError:
            return False

    def list(self) -> list[str]:
        """Registered exact names (patterns are not expanded)."""
        self._load_entry_points()
        return sorted(self._items)

    def names(self) -> list[str]:
        """Exact names plus the pattern families, for error messages and help."""
        return self.list() + [shown for _, shown, _ in self._patterns]

    def __iter__(self) -> Iterator[str]:
        return iter(self.list())
