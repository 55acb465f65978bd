import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

from open_lth_concave.foundations.hparams import HparamError
from open_lth_concave.foundations.io import CorruptFileError
from open_lth_concave.pruning.mask import Mask, MaskShapeError, apply_mask
from open_lth_concave.pruning.sparse_global import prune_by_magnitude_rule, prune_exact_count


def reference_open_lth_rule(weights, mask, fraction, ignore):
    """The contract's counting, written independently with numpy."""
    names = [n for n in weights if n not in ignore]
    alive = np.concatenate([np.abs(weights[n])[mask[n] == 1] for n in names])
    count = math.ceil(fraction * alive.size)
    threshold = np.sort(alive)[min(count, alive.size - 1)]
    return {n: (np.where((np.abs(weights[n]) > threshold) & (mask[n] == 1), 1.0, 0.0) if n in names else mask[n])
            for n in weights}


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.05, 0.95), st.booleans())
def test_sparse_global_equals_reference(seed, fraction, ignore_last):
    rng = np.random.default_rng(seed)
    weights = {"a.weight": rng.normal(size=(7, 5)), "b.weight": rng.normal(size=(4, 3, 2)), "fc.weight": rng.normal(size=(3, 4))}
    weights = {n: w.astype(np.float32) for n, w in weights.items()}  # model weights are float32
    mask = {n: (rng.random(w.shape) > 0.3).astype(float) for n, w in weights.items()}
    ignore = {"fc.weight"} if ignore_last else set()
    ours = prune_by_magnitude_rule({n: torch.tensor(w).abs() for n, w in weights.items()},
                                   Mask({n: torch.tensor(m, dtype=torch.float32) for n, m in mask.items()}), fraction, ignore)
    ref = reference_open_lth_rule(weights, mask, fraction, ignore)
    for n in weights:
        np.testing.assert_array_equal(ours[n].numpy(), ref[n])
        assert torch.all(ours[n] <= torch.tensor(mask[n], dtype=torch.float32))  # never revives a weight


def test_sparse_global_counts_on_distinct_magnitudes():
    # 100 distinct magnitudes, fraction 0.2: count = 20, threshold = 21st smallest, strictly above survives
    w = torch.arange(1, 101, dtype=torch.float32).reshape(10, 10)
    new = prune_by_magnitude_rule({"x": w}, Mask({"x": torch.ones(10, 10)}), 0.2, set())
    assert int(new["x"].sum()) == 79
    assert new["x"].flatten()[:21].sum() == 0 and new["x"].flatten()[21:].all()


def test_ignored_layers_are_untouched_and_unknown_ones_rejected():
    w = {"a": torch.randn(20), "fc": torch.randn(5) * 1e-6}
    m = Mask({"a": torch.ones(20), "fc": torch.ones(5)})
    new = prune_by_magnitude_rule(w, m, 0.5, {"fc"})
    assert new["fc"].sum() == 5 and new["a"].sum() < 20
    with pytest.raises(HparamError, match="nope"):
        prune_by_magnitude_rule(w, m, 0.5, {"nope"})


@given(st.integers(0, 500), st.integers(0, 60))
@settings(max_examples=40, deadline=None)
def test_exact_count_removes_exactly(seed, count):
    g = torch.Generator().manual_seed(seed)
    scores = {"a": torch.rand(6, 5, generator=g), "b": torch.rand(30, generator=g).round(decimals=1)}  # ties
    mask = Mask({"a": (torch.rand(6, 5, generator=g) > 0.2).float(), "b": torch.ones(30)})
    alive = int(mask["a"].sum() + mask["b"].sum())
    new = prune_exact_count(scores, mask, count, set())
    assert int(new["a"].sum() + new["b"].sum()) == alive - min(count, alive)
    assert torch.all(new["a"] <= mask["a"])


def test_mask_save_load_and_reports(tmp_path):
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    model.prunable_layer_names = ["0.weight", "1.weight"]
    mask = Mask.ones_like(model)
    mask["0.weight"][0] = 0
    mask.save(tmp_path / "mask.pth")
    back = Mask.load(tmp_path / "mask.pth")
    assert set(back) == {"0.weight", "1.weight"} and torch.equal(back["0.weight"], mask["0.weight"])
    assert back.sparsity_report() == {"total": 18.0, "unpruned": 14.0}
    apply_mask(model, back)
    assert torch.all(model[0].weight[0] == 0) and torch.all(model[0].weight[1:] != 0)


def test_mask_checks_shapes_and_rejects_corrupt_files(tmp_path):
    model = nn.Sequential(nn.Linear(4, 3))
    with pytest.raises(MaskShapeError, match="shape"):
        apply_mask(model, Mask({"0.weight": torch.ones(4, 4)}))
    with pytest.raises(MaskShapeError, match="names no parameter"):
        apply_mask(model, Mask({"zzz": torch.ones(1)}))
    path = tmp_path / "mask.pth"
    Mask({"0.weight": torch.ones(3, 4)}).save(path)
    path.write_bytes(path.read_bytes()[:40])  # truncated
    with pytest.raises(CorruptFileError, match="mask.pth"):
        Mask.load(path)
    with pytest.raises(CorruptFileError, match="does not match the hash recorded"):   # changed since it was written
        torch.save({"0.weight": torch.full((3, 4), 0.5)}, path)
        Mask.load(path)
    from open_lth_concave.foundations import io
    io.save_torch({"0.weight": torch.full((3, 4), 0.5)}, path)       # written as a mask file, but not a mask
    with pytest.raises(CorruptFileError, match="other than 0 and 1"):
        Mask.load(path)
