"""One registry mechanism for every pluggable kind of thing.

Datasets, models, pruning strategies, training strategies, regularizers and branches all use
`Registry`: register at the definition site with a decorator, look up with `get(name)` (whose error
lists the valid names), enumerate with `list()`. Outside packages register without editing this
package through Python entry points (README, "Write a plug-in"):

- `open_lth_concave.plugins` (`PLUGINS_GROUP`): each entry is a module imported once at start-up
  (`plugins.load_plugins()`), whose `@register` decorators may fill any registry. The bundled concave
  plug-in is declared there, as an outside package would declare itself.
- `open_lth_concave.<kind, plural>` (`Registry.entry_point_group`, e.g. `open_lth_concave.models`,
  `open_lth_concave.pruning_strategies`, `open_lth_concave.branches`): imported the first time that
  registry is asked for a name or a list.
"""
from __future__ import annotations

import re
from importlib import metadata
from typing import Callable, Generic, Iterator, TypeVar

from open_lth_concave.foundations.errors import UserError, did_you_mean

T = TypeVar("T")


ENTRY_POINT_PREFIX = "open_lth_concave"
PLUGINS_GROUP = f"{ENTRY_POINT_PREFIX}.plugins"


class UnknownNameError(UserError, ValueError):
    """A name that is not registered; the message lists what is allowed."""


class PluginError(UserError, ImportError):
    """An installed plug-in's entry point failed to load; names the entry point, its package and why."""


_installed: metadata.EntryPoints | None = None


def installed_entry_points(group: str) -> metadata.EntryPoints:
    """The installed entry points of `group`, from one scan per process: each scan reads every installed
    distribution's metadata (10-30 ms here) and a command asks for up to nine groups. When this package
    runs from a source tree that is not installed (e.g. a bare machine with only a copy of the tree), its
    own entry points come from the tree's pyproject.toml, so its bundled plug-ins load as when installed."""
    global _installed
    if _installed is None:
        found = metadata.entry_points()
        try:
            metadata.distribution(ENTRY_POINT_PREFIX)
        except metadata.PackageNotFoundError:
            found = metadata.EntryPoints([*found, *source_tree_entry_points()])
        _installed = found
    return _installed.select(group=group)


def source_tree_entry_points() -> list[metadata.EntryPoint]:
    """The entry points this package's pyproject.toml declares, read from the source tree it is imported
    from ([] when there is none, or it is another project's)."""
    import tomllib
    from pathlib import Path
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    try:
        project = tomllib.loads(pyproject.read_text()).get("project", {})
    except (OSError, ValueError):
        return []
    if project.get("name") != ENTRY_POINT_PREFIX:
        return []
    return [metadata.EntryPoint(name=name, value=value, group=group)
            for group, entries in project.get("entry-points", {}).items() for name, value in entries.items()]


def load_entry_points(group: str) -> list[str]:
    """Import every entry point of `group` (in name order); returns their names. A failing one is one
    line naming it, its distribution and the cause."""
    loaded = []
    for ep in sorted(installed_entry_points(group), key=lambda e: (e.name, e.value)):
        try:
            ep.load()
        except Exception as e:   # noqa: BLE001 - whatever a plug-in raises while importing, say which one
            dist = getattr(getattr(ep, "dist", None), "name", None) or "an installed package"
            raise PluginError(f"plug-in {ep.name!r} = {ep.value!r} (entry-point group {group}, from {dist}) "
                              f"failed to load: {type(e).__name__}: {e}") from e
        loaded.append(ep.name)
    return loaded


class Registry(Generic[T]):
    """Name -> object, plus optional name patterns (e.g. `cifar_resnet_<D>`) resolved by a factory."""

    def __init__(self, kind: str, plural: str | None = None):
        self.kind = kind
        self.plural = plural or f"{kind}s"
        # outside packages add entries through this entry-point group (loaded on first use)
        self.entry_point_group = f"{ENTRY_POINT_PREFIX}.{self.plural.replace(' ', '_')}"
        self._items: dict[str, T] = {}
        self._patterns: list[tuple[re.Pattern, str, Callable[[re.Match], T]]] = []
        self._examples: dict[str, str] = {}      # pattern (as shown) -> a small name it resolves
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

    def register_pattern(self, regex: str, shown_as: str, example: str | None = None
                         ) -> Callable[[Callable[[re.Match], T]], Callable[[re.Match], T]]:
        """Register a family of names (e.g. every `mnist_lenet_<w1>_<w2>...`) built by a factory;
        `example` is a small name of the family (e.g. `mnist_lenet_16`): the contract tests build it."""
        if example is not None and not re.fullmatch(regex, example):
            raise ValueError(f"{self.kind} pattern {shown_as!r}: its example {example!r} does not match it")

        def decorator(factory: Callable[[re.Match], T]) -> Callable[[re.Match], T]:
            if any(shown == shown_as for _, shown, _ in self._patterns):
                raise ValueError(f"{self.kind} pattern {shown_as!r} is already registered")
            self._patterns.append((re.compile(regex), shown_as, factory))
            if example is not None:
                self._examples[shown_as] = example
            return factory
        return decorator

    def patterns(self) -> dict[str, str | None]:
        """Each registered pattern (as shown) -> its example name (None when it declared none)."""
        self._load_entry_points()
        return {shown: self._examples.get(shown) for _, shown, _ in self._patterns}

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        load_entry_points(self.entry_point_group)

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
        raise UnknownNameError(f"unknown {self.kind} {name!r}{did_you_mean(str(name), self.list())}; "
                               f"valid: {', '.join(self.names())}")

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
