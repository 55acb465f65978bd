"""The concave plug-in: soft masks with concave penalties (the paper's method) and its ablations.

Where things are:
    regularizers.py   the penalties r(m) (l1, log, lq, mcp) and their registry
    flat_mask.py      one flat mask tensor for the whole network + the masked forward pass
    soft_mask.py      training strategy `soft_mask` (Eq. 2, projection onto [0,1])
    search.py         one level of a mask search: train, threshold (or fraction), save artifacts
    strategies.py     pruning strategies `concave_<regularizer>`, one per registered regularizer
    sigmoid_mask.py   ablation `sigmoid_mask` (training and pruning strategy)
Everything registers through the core's public registries; importing this package is enough.
"""
from open_lth_concave.concave import regularizers  # noqa: F401
from open_lth_concave.concave import soft_mask  # noqa: F401
from open_lth_concave.concave import strategies  # noqa: F401
from open_lth_concave.concave import sigmoid_mask  # noqa: F401
