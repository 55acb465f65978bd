"""Loading plug-ins: the bundled concave plug-in and any package's `open_lth_concave.plugins` entry points.

The core never imports a plug-in by itself; the command line calls `load_plugins()` once, and each
plug-in registers its datasets, models, strategies or branches through the public registries.
"""
from __future__ import annotations

import importlib
from importlib import metadata

BUNDLED = ("open_lth_concave.concave",)
_loaded = False


def load_plugins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in BUNDLED:
        importlib.import_module(module)
    for ep in metadata.entry_points(group="open_lth_concave.plugins"):
        ep.load()


def load_core() -> None:
    """Import the core's own registrations (datasets, models, pruning, branches)."""
    import open_lth_concave.branches  # noqa: F401
    import open_lth_concave.datasets  # noqa: F401
    import open_lth_concave.models  # noqa: F401
    import open_lth_concave.pruning  # noqa: F401
