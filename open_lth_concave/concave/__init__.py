"""The concave plug-in: soft masks with concave penalties (the paper's method) and its ablations.

Where things are:
    regularizers.py   the penalties r(m) (l1, log, lq, mcp), their registry, and MaskPenalty (lambda x r, resolved once)
    mask_hparams.py   the mask's hyperparameters (start value, alpha, optimizer), declared once for searches and soft_mask
    flat_mask.py      one flat mask tensor for the whole network + the masked forward pass
    soft_mask.py      training strategy `soft_mask` (Eq. 2, projection onto [0,1])
    search.py         one level of a mask search: train, threshold (or fraction), save artifacts
    strategies.py     pruning strategies `concave_<regularizer>`, one per registered regularizer
    sigmoid_mask.py   ablation `sigmoid_mask` (training and pruning strategy)
Everything registers through the core's public registries; importing this package is enough. The package
declares itself as a plug-in in pyproject.toml (entry-point group `open_lth_concave.plugins`), so the core
never imports it by name.
"""
from open_lth_concave.concave import regularizers  # noqa: F401
from open_lth_concave.concave import soft_mask  # noqa: F401
from open_lth_concave.concave import strategies  # noqa: F401
from open_lth_concave.concave import sigmoid_mask  # noqa: F401
