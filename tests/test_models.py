"""Model families, their defaults and the seeded initializers."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from open_lth_concave.foundations.hparams import DatasetHparams, ModelHparams, TrainingHparams
from open_lth_concave.foundations.registry import UnknownNameError
from open_lth_concave.models import batchnorm_inits, get_model, model_inits, registry
from open_lth_concave.models.base import Model

LENETS = ["mnist_lenet_300_100", "digits_lenet_300_100", "mnist_lenet_20_10", "mnist_lenet_50"]
RESNETS = ["cifar_resnet_8", "cifar_resnet_20", "cifar_resnet_14_32"]
VGGS = ["cifar_vgg_11", "cifar_vgg_16"]
ALL = LENETS + RESNETS + VGGS

CIFAR, TINY, MNIST, DIGITS = (3, 32, 32), (3, 64, 64), (1, 28, 28), (1, 8, 8)


def hparams(name: str, model_init: str = "kaiming_normal", bn_init: str = "uniform") -> ModelHparams:
    return ModelHparams(model_name=name, model_init=model_init, batchnorm_init=bn_init)


def make(name: str, shape=CIFAR, classes: int = 10, seed: int = 0, **kw) -> Model:
    return get_model(hparams(name, **kw), shape, classes, torch.Generator().manual_seed(seed))


# ---- architecture --------------------------------------------------------------------------------

def shapes_for(name: str) -> list[tuple[int, int, int]]:
    return [MNIST, DIGITS, CIFAR] if "lenet" in name else [CIFAR, TINY, MNIST]


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("classes", [10, 100, 200])
def test_forward_shape_adapts_to_dataset(name, classes):
    for shape in shapes_for(name):
        model = make(name, shape, classes).eval()
        with torch.no_grad():
            out = model(torch.randn(2, *shape))
        assert out.shape == (2, classes), (name, shape)
        assert torch.isfinite(out).all()


def resnet_param_count(depth: int, width: int, classes: int, in_channels: int = 3) -> int:
    """From the architecture: stem conv+BN, 2 conv+BN per block, 1x1 conv+BN shortcuts, fc."""
    n = (depth - 2) // 6
    total = in_channels * width * 9 + 2 * width
    current = width
    for stage in range(3):
        w = width * 2 ** stage
        for _ in range(n):
            total += current * w * 9 + 2 * w + w * w * 9 + 2 * w
            if current != w:
                total += current * w + 2 * w
            current = w
    return total + current * classes + classes


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_resnet20_parameter_count():
    assert resnet_param_count(20, 16, 10) == 272_474
    assert count(make("cifar_resnet_20")) == 272_474


@pytest.mark.parametrize("name,depth,width", [("cifar_resnet_8", 8, 16), ("cifar_resnet_14_32", 14, 32),
                                              ("cifar_resnet_56", 56, 16)])
@pytest.mark.parametrize("classes", [10, 200])
def test_resnet_parameter_counts(name, depth, width, classes):
    assert count(make(name, TINY, classes)) == resnet_param_count(depth, width, classes)


def test_resnet_structure():
    model = make("cifar_resnet_20")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    # Depth counts the 3x3 convs plus fc; the two stage transitions add 1x1 shortcuts.
    assert sum(c.kernel_size == (3, 3) for c in convs) == 19
    assert [c.stride for c in convs if c.kernel_size == (1, 1)] == [(2, 2), (2, 2)]
    assert model.fc.in_features == 64


@pytest.mark.parametrize("depth", [11, 13, 16, 19])
def test_vgg_layers(depth):
    model = make(f"cifar_vgg_{depth}")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == depth - 3  # the original's three FC layers become one
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 4
    expected = sum(c.in_channels * c.out_channels * 9 + 3 * c.out_channels for c in convs) + 512 * 10 + 10
    assert count(model) == expected
    if depth == 16:
        assert expected == 14_728_266


def test_lenet_layers_and_count():
    model = make("mnist_lenet_300_100", MNIST)
    assert count(model) == 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10
    assert [n for n, _ in model.named_parameters()] == [
        "fc_layers.0.weight", "fc_layers.0.bias", "fc_layers.1.weight", "fc_layers.1.bias", "fc.weight", "fc.bias"]
    assert make("digits_lenet_300_100", DIGITS).fc_layers[0].in_features == 64


@settings(max_examples=25, deadline=None)
@given(widths=st.lists(st.integers(1, 40), min_size=1, max_size=4), classes=st.integers(2, 30))
def test_lenet_any_widths(widths, classes):
    name = "mnist_lenet_" + "_".join(map(str, widths))
    model = make(name, MNIST, classes)
    sizes = [784] + widths + [classes]
    assert count(model) == sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    assert model(torch.zeros(3, *MNIST)).shape == (3, classes)


@pytest.mark.parametrize("name", ALL)
def test_prunable_and_output_names(name):
    model = make(name, shapes_for(name)[0])
    # Conv/linear weights are exactly the parameters with >1 dimension (biases and BN are vectors).
    matrices = [n for n, p in model.named_parameters() if p.dim() > 1]
    assert model.prunable_layer_names == matrices
    assert not any(".bias" in n or "bn" in n for n in model.prunable_layer_names)
    assert "fc.weight" in model.prunable_layer_names
    assert model.output_layer_names == ["fc.weight", "fc.bias"]
    assert set(model.output_layer_names) <= set(model.state_dict())


# ---- names and defaults --------------------------------------------------------------------------

@pytest.mark.parametrize("name,value", [("cifar_resnet_21", "21"), ("cifar_resnet_2", "2"),
                                        ("cifar_resnet_20_0", "0"), ("cifar_vgg_12", "12"),
                                        ("mnist_lenet_", "mnist_lenet_"), ("mnist_lenet_300_0", "300_0"),
                                        ("mnist_lenet_a", "'a'"), ("digits_lenet", "digits_lenet"),
                                        ("cifar_resnet", "cifar_resnet")])
def test_invalid_names_say_why(name, value):
    with pytest.raises(UnknownNameError) as info:
        registry.get(name)
    assert value in str(info.value) and name in str(info.value)


def test_invalid_depth_lists_valid_ones():
    with pytest.raises(UnknownNameError, match="6n\\+2"):
        registry.get("cifar_resnet_21")
    with pytest.raises(UnknownNameError, match="11, 13, 16, 19"):
        registry.get("cifar_vgg_12")


def test_families_are_listed():
    shown = " ".join(registry.names())
    for family in ("mnist_lenet_", "digits_lenet_", "cifar_resnet_", "cifar_vgg_"):
        assert family in shown


@pytest.mark.parametrize("name", ALL)
def test_defaults_are_valid_hparams(name):
    d = registry.get(name).defaults
    assert set(d) == {"dataset", "model", "training", "pruning"}
    assert DatasetHparams.from_dict(d["dataset"]).batch_size > 0
    model = ModelHparams.from_dict(d["model"])
    assert (model.model_name, model.model_init, model.batchnorm_init) == (name, "kaiming_normal", "uniform")
    TrainingHparams(**d["training"])  # every key is a training field
    assert d["pruning"]["pruning_strategy"] == "sparse_global" and d["pruning"]["pruning_fraction"] == 0.2


def test_default_values_follow_the_contract():
    lenet = registry.get("mnist_lenet_300_100").defaults
    assert lenet["dataset"] == {"dataset_name": "mnist", "batch_size": 128}
    assert lenet["training"] == {"optimizer_name": "sgd", "lr": 0.1, "training_steps": "40ep"}
    assert lenet["pruning"]["pruning_layers_to_ignore"] == "fc.weight"

    digits = registry.get("digits_lenet_300_100").defaults
    assert digits["dataset"] == {"dataset_name": "digits", "batch_size": 32}
    assert digits["training"] == {"optimizer_name": "sgd", "lr": 0.05, "momentum": 0.9, "training_steps": "20ep"}
    assert digits["pruning"]["pruning_layers_to_ignore"] == "fc.weight"

    cifar_training = {"optimizer_name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4,
                      "milestone_steps": "80ep,120ep", "gamma": 0.1, "training_steps": "160ep"}
    for name in ("cifar_resnet_20", "cifar_resnet_14_32", "cifar_vgg_16"):
        d = registry.get(name).defaults
        assert d["dataset"] == {"dataset_name": "cifar10", "batch_size": 128}
        assert d["training"] == cifar_training
    assert "pruning_layers_to_ignore" not in registry.get("cifar_resnet_20").defaults["pruning"]
    assert registry.get("cifar_vgg_16").defaults["pruning"]["pruning_layers_to_ignore"] == "fc.weight"


def test_digits_defaults_learn_digits():
    """The digits preset must actually train: a plain loop with its values reaches >= 95% test accuracy."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x / 16.0, y, test_size=360, random_state=0, stratify=y)
    x_train, x_test = (torch.tensor(a, dtype=torch.float32).view(-1, *DIGITS) for a in (x_train, x_test))
    y_train, y_test = torch.tensor(y_train), torch.tensor(y_test)
    d = registry.get("digits_lenet_300_100").defaults
    model = get_model(ModelHparams(**d["model"]), DIGITS, 10, torch.Generator().manual_seed(0))
    opt = torch.optim.SGD(model.parameters(), lr=d["training"]["lr"], momentum=d["training"]["momentum"])
    order = torch.Generator().manual_seed(0)
    batch = d["dataset"]["batch_size"]
    for _ in range(int(d["training"]["training_steps"].removesuffix("ep"))):
        perm = torch.randperm(len(x_train), generator=order)
        for i in range(0, len(x_train), batch):
            idx = perm[i:i + batch]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x_train[idx]), y_train[idx]).backward()
            opt.step()
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    assert accuracy >= 0.95


# ---- initialization ------------------------------------------------------------------------------

@pytest.mark.parametrize("name,init", [(name, init) for name in ("mnist_lenet_20_10", "cifar_resnet_8")
                                       for init in ("kaiming_normal", "kaiming_uniform", "binary", "orthogonal")]
                         + [("cifar_vgg_11", "kaiming_normal")])
def test_same_seed_same_weights_other_seed_different(name, init):
    shape = shapes_for(name)[0]
    a, b, c = (make(name, shape, seed=s, model_init=init).state_dict() for s in (7, 7, 8))
    assert all(torch.equal(a[k], b[k]) for k in a)
    for k in make(name, shape).prunable_layer_names:
        assert not torch.equal(a[k], c[k]), k


def test_building_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    make("cifar_resnet_8")
    assert torch.equal(torch.rand(3), expected)


def test_initialization_ignores_global_rng():
    torch.manual_seed(1)
    a = make("cifar_resnet_8", seed=5).state_dict()
    torch.manual_seed(2)
    b = make("cifar_resnet_8", seed=5).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_kaiming_normal_statistics_and_zero_biases():
    model = make("mnist_lenet_300_100", MNIST, model_init="kaiming_normal")
    w = model.fc_layers[0].weight  # 235,200 draws: the sample std is within ~0.5% of the target
    assert abs(w.std().item() / math.sqrt(2 / 784) - 1) < 0.02
    assert abs(w.mean().item()) < 0.01 * math.sqrt(2 / 784)  # standard error is ~0.002 std
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            assert torch.count_nonzero(p) == 0, name


def test_kaiming_uniform_bounds():
    w = make("mnist_lenet_300_100", MNIST, model_init="kaiming_uniform").fc_layers[0].weight
    bound = math.sqrt(6 / 784)
    assert w.abs().max().item() <= bound
    assert w.abs().max().item() > 0.99 * bound
    assert abs(w.std().item() / math.sqrt(2 / 784) - 1) < 0.02


def test_binary_weights_are_signed_kaiming_std():
    model = make("cifar_resnet_8", model_init="binary")
    conv = model.blocks[1].conv1.weight  # 16 -> 32 channels: fan-in 16 * 3 * 3 (fan-out would be 288)
    assert torch.allclose(conv.abs(), torch.full_like(conv, math.sqrt(2 / 144)))
    positive = (conv > 0).float().mean().item()
    assert 0.4 < positive < 0.6


def test_orthogonal_rows_or_columns_are_orthonormal():
    model = make("mnist_lenet_20_10", MNIST, classes=200, model_init="orthogonal")
    wide = model.fc_layers[0].weight  # 20 x 784: orthonormal rows
    assert torch.allclose(wide @ wide.T, torch.eye(20), atol=1e-5)
    tall = model.fc.weight            # 200 x 10: orthonormal columns
    assert torch.allclose(tall.T @ tall, torch.eye(10), atol=1e-5)
    conv = make("cifar_resnet_8", model_init="orthogonal").conv.weight.flatten(1)  # 16 x 27
    assert torch.allclose(conv @ conv.T, torch.eye(16), atol=1e-5)


def test_batchnorm_inits():
    bns = [m for m in make("cifar_resnet_8", bn_init="uniform").modules() if isinstance(m, nn.BatchNorm2d)]
    weights = torch.cat([bn.weight.detach() for bn in bns])
    assert weights.min() >= 0 and weights.max() < 1
    assert weights.std() > 0.2  # U(0,1) has std 0.289; a constant fill would give 0
    assert all(torch.count_nonzero(bn.bias) == 0 for bn in bns)
    fixed = [m for m in make("cifar_vgg_11", bn_init="fixed").modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(torch.equal(bn.weight, torch.ones_like(bn.weight)) and torch.count_nonzero(bn.bias) == 0
               for bn in fixed)


def test_initializer_registries():
    assert model_inits.list() == ["binary", "kaiming_normal", "kaiming_uniform", "orthogonal"]
    assert batchnorm_inits.list() == ["fixed", "uniform"]
    with pytest.raises(UnknownNameError, match="glorot"):
        make("cifar_resnet_8", model_init="glorot")
    with pytest.raises(UnknownNameError, match="zeros"):
        make("cifar_resnet_8", bn_init="zeros")
