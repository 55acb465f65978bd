"""Masks and pruning strategies (import registers the built-in `sparse_global`)."""
from open_lth_concave.pruning import sparse_global  # noqa: F401
from open_lth_concave.pruning.mask import Mask, apply_mask  # noqa: F401
from open_lth_concave.pruning.strategy import PruningContext, PruningStrategy, registry  # noqa: F401
