"""Human names for plots and tables (the paper's: ResNet-20, CIFAR-10, IMP, ...); unknown names pass through."""
from __future__ import annotations

import re

DATASETS = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "tiny_imagenet": "Tiny ImageNet",
            "mnist": "MNIST", "digits": "Digits (8×8)"}
STRATEGIES = {"sparse_global": "IMP", "concave_l1": "Concave ℓ1", "concave_log": "Concave log",
              "concave_lq": "Concave ℓq", "concave_mcp": "Concave MCP", "sigmoid_mask": "Sigmoid mask"}


def dataset_name(name: str) -> str:
    return DATASETS.get(name, name)


def model_name(name: str) -> str:
    m = re.fullmatch(r"cifar_resnet_(\d+)(?:_(\d+))?", name)
    if m:
        if m.group(2) and m.group(2) != "16":
            return f"WideResNet-{m.group(1)} (width {m.group(2)})"
        return f"ResNet-{m.group(1)}"
    m = re.fullmatch(r"cifar_vgg_(\d+)", name)
    if m:
        return f"VGG-{m.group(1)}"
    m = re.fullmatch(r"(?:mnist|digits)_lenet_(.+)", name)
    if m:
        return "LeNet-" + m.group(1).replace("_", "-")
    return name


def strategy_name(label: str) -> str:
    """`concave_l1 (pruning_mode=fraction)` -> `Concave ℓ1 (pruning_mode=fraction)`."""
    base, _, rest = label.partition(" ")
    pretty = STRATEGIES.get(base, base)
    return f"{pretty} {rest}".strip()


def duration(seconds) -> str:
    if seconds is None:
        return "—"
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"
