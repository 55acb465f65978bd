"""What the dependency floors in pyproject.toml promise: features that newer versions brought are used
where present and replaced where missing (fused optimizer kernels on the CPU from torch 2.4; the
`l1_ratio` spelling of an l1 penalty from scikit-learn 1.8)."""
from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import torch

from open_lth_concave.foundations.hparams import TrainingHparams
from open_lth_concave.illustrate import methods
from open_lth_concave.platform import Platform, fused_kernels_available
from open_lth_concave.training.optimizers import build_optimizer

from conftest import REPO

HPARAMS = TrainingHparams(optimizer_name="sgd", lr=0.1, training_steps="1it", momentum=0.9)


def _floor(package: str) -> tuple[int, ...]:
    text = (REPO / "pyproject.toml").read_text()
    version = re.search(rf'"{package}>=([0-9.]+)"', text).group(1)
    return tuple(int(p) for p in version.split("."))


def _version(module) -> tuple[int, int]:
    return tuple(int(p) for p in re.match(r"(\d+)\.(\d+)", module.__version__).groups())


# ---- fused optimizer kernels ---------------------------------------------------------------------------------
@pytest.fixture
def fresh_probe():
    fused_kernels_available.cache_clear()
    yield
    fused_kernels_available.cache_clear()


def test_fused_cpu_kernels_are_used_where_this_torch_has_them(fresh_probe):
    if _version(torch) < (2, 4):
        pytest.skip("this torch has no fused CPU optimizers")
    platform = Platform(device="cpu")
    assert platform.fused_optimizer
    optimizer = build_optimizer(torch.nn.Linear(3, 2), HPARAMS, [], fused=platform.fused_optimizer)
    assert optimizer.defaults["fused"] is True


class _SGDWithoutFused(torch.optim.SGD):
    """torch.optim.SGD as torch < 2.3 has it: no `fused` argument."""

    def __init__(self, params, *args, **kwargs):
        if "fused" in kwargs:
            raise TypeError("SGD.__init__() got an unexpected keyword argument 'fused'")
        super().__init__(params, *args, **kwargs)


class _AdamWithoutCpuFused(torch.optim.Adam):
    """torch.optim.Adam as torch < 2.4 has it: fused kernels for CUDA tensors only."""

    def __init__(self, params, *args, fused=None, **kwargs):
        if fused:
            raise RuntimeError("`fused=True` requires all the params to be floating point Tensors of "
                               "supported devices: ['cuda', 'xpu']")
        super().__init__(params, *args, **kwargs)


@pytest.mark.parametrize("missing", ["sgd", "adam"])
def test_an_older_torch_without_fused_cpu_kernels_falls_back_to_the_plain_optimizers(fresh_probe, monkeypatch, missing):
    if missing == "sgd":
        monkeypatch.setattr(torch.optim, "SGD", _SGDWithoutFused)
    else:
        monkeypatch.setattr(torch.optim, "Adam", _AdamWithoutCpuFused)
    platform = Platform(device="cpu")
    assert platform.fused_optimizer is False
    for name in ("sgd", "adam"):   # the optimizers build and step, without fused kernels
        model = torch.nn.Linear(3, 2)
        hp = TrainingHparams(optimizer_name=name, lr=0.1, training_steps="1it")
        optimizer = build_optimizer(model, hp, [], fused=platform.fused_optimizer)
        before = model.weight.detach().clone()
        model(torch.ones(4, 3)).sum().backward()
        optimizer.step()
        assert not torch.equal(model.weight, before) and not optimizer.defaults.get("fused")


def test_the_readme_states_the_torch_floor_of_pyproject():
    major, minor = _floor("torch")[:2]
    assert f"any torch >= {major}.{minor} works" in (REPO / "README.md").read_text()


# ---- the illustration's l1 reference -----------------------------------------------------------------------
def _draws(seed: int = 0, draws: int = 2, n: int = 200, d: int = 30):
    """Gaussian features (none constant, so an l2 fit has no zero coefficient), 3 of them informative."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(draws, n, d))
    logits = 3 * x[..., 0] - 2 * x[..., 1] + 1.5 * x[..., 2]
    y = (logits + rng.logistic(size=logits.shape) > 0).astype(np.int64)
    ones = np.ones((draws, n, 1))
    x = np.concatenate([x, ones], axis=2)   # the methods' layout: intercept column last
    return x[:, :150], y[:, :150], x[:, 150:], y[:, 150:]


def test_the_l1_reference_is_sparse_and_sparser_with_a_larger_lambda():
    x_tr, y_tr, x_va, y_va = _draws()
    with warnings.catch_warnings():
        warnings.simplefilter("error")    # no deprecation or "parameter ignored" warning on any version
        acc, spa = methods.sklearn_l1(x_tr, y_tr, x_va, y_va, np.array([1e-4, 2e-2, 1e-1]))
    assert spa.shape == (2, 3)
    assert (spa[:, 0] < 0.2).all()                  # a weak penalty keeps most coefficients
    assert (spa[:, 2] >= 0.8).all()                 # a strong one zeroes most of the 27 noise features
    assert (np.diff(spa, axis=1) >= 0).all()
    assert (acc[:, 1] > 0.75).all()                 # the informative features survive


@pytest.mark.parametrize("version, expected", [("1.2.2", {"penalty": "l1"}), ("1.7.2", {"penalty": "l1"}),
                                               ("1.8.0", {"l1_ratio": 1.0}), ("1.10.0rc1", {"l1_ratio": 1.0})])
def test_l1_penalty_arguments_follow_the_scikit_learn_version(monkeypatch, version, expected):
    import sklearn
    monkeypatch.setattr(sklearn, "__version__", version)
    assert methods.l1_penalty() == expected

