"""Loading plug-ins: every installed package's `open_lth_concave.plugins` entry points.

The core never imports a plug-in by itself, not even the bundled concave one: this package declares
it in its own pyproject.toml (`[project.entry-points."open_lth_concave.plugins"] concave =
"open_lth_concave.concave"`), exactly as an outside package declares itself. The command line calls
`load_core()` and `load_plugins()` once; each plug-in registers its datasets, models, strategies or
branches through the public registries (foundations/registry.py, which also loads the per-registry
groups such as `open_lth_concave.models` on first use).
"""
from __future__ import annotations

from open_lth_concave.foundations.registry import PLUGINS_GROUP, load_entry_points

_loaded: list[str] | None = None


def load_plugins() -> list[str]:
    """Import every `open_lth_concave.plugins` entry point once; returns their names (e.g. ['concave'])."""
    global _loaded
    if _loaded is None:
        _loaded = []   # set first: a plug-in that calls load_plugins() while importing does not recurse
        _loaded.extend(load_entry_points(PLUGINS_GROUP))
    return list(_loaded)


def load_core() -> None:
    """Import the core's own registrations (datasets, models, pruning, branches)."""
    import open_lth_concave.branches  # noqa: F401
    import open_lth_concave.datasets  # noqa: F401
    import open_lth_concave.models  # noqa: F401
    import open_lth_concave.pruning  # noqa: F401
