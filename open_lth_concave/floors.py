"""The floors of the package: which part may import which. Data only; it imports nothing.

Every top-level package or module of `open_lth_concave` stands on one floor and imports only from its
own floor or a lower one, so arrows point down and the ground floor (`foundations/`: errors, steps,
hyperparameters, descriptions and their hashes, registries, files, the output layout) needs nothing
above it. On one floor, parts may import each other (e.g. `training` uses `pruning.mask`), but no two
modules anywhere may import each other, directly or around a loop. The plug-ins bundled here (the
concave method, the illustration, open_lth's upstream checkout) stand on top: they use the core's
public registries and hooks, and the core never imports them.

tests/test_architecture.py walks every import (top-level and inside functions) and fails on an
import cycle or an edge from a floor to a higher one.
"""

FLOORS: tuple[tuple[str, ...], ...] = (
    ("foundations",),                                # ground: imports nothing above it
    ("platform", "models", "datasets"),
    ("pruning", "training", "results"),              # results: the readers of run and level folders
    ("lottery", "branches"),
    ("presets", "plugins", "report", "jobs"),
    ("cli", "__main__"),
    ("concave", "illustrate", "upstream"),          # the plug-ins on top of the core
)

# the package's own `__init__` (its version) and this file import nothing: they stand on the ground floor
GROUND_MODULES: tuple[str, ...] = ("", "floors")


def floor_of(part: str) -> int:
    """The floor of a top-level part (`training`, `cli`, ...; "" is the package's `__init__`)."""
    if part in GROUND_MODULES:
        return 0
    for number, parts in enumerate(FLOORS):
        if part in parts:
            return number
    raise KeyError(f"{part!r} stands on no floor: add it to open_lth_concave/floors.py")
