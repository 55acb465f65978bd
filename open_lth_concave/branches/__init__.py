"""Branch registry (import registers the built-in branches); runner.py runs a branch on a finished trunk."""
from open_lth_concave.branches import builtin  # noqa: F401
from open_lth_concave.branches.base import BranchContext, register_branch, registry  # noqa: F401
