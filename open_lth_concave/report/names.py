"""Human names for plots and tables (the paper's: ResNet-20, CIFAR-10, IMP, ...); unknown names pass through.
A pruning strategy's name, colour, marker and line style are its registered class's own attributes."""
from __future__ import annotations

import re
from typing import Optional

DATASETS = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "tiny_imagenet": "Tiny ImageNet",
            "mnist": "MNIST", "digits": "Digits (8×8)"}


def dataset_name(name: str) -> str:
    return DATASETS.get(name, name)


def model_name(name: str) -> str:
    m = re.fullmatch(r"cifar_resnet_(\d+)(?:_(\d+))?", name)
    if m:
        width = int(m.group(2) or 16)
        if width > 16:     # wider than ResNet's 16 first-stage channels: the paper's WRN (e.g. width 64)
            return f"WideResNet-{m.group(1)} (width {width})"
        return f"ResNet-{m.group(1)}" + (f" (width {width})" if width < 16 else "")
    m = re.fullmatch(r"cifar_vgg_(\d+)", name)
    if m:
        return f"VGG-{m.group(1)}"
    m = re.fullmatch(r"(?:mnist|digits)_lenet_(.+)", name)
    if m:
        return "LeNet-" + m.group(1).replace("_", "-")
    return name


def strategy_class(name: str) -> Optional[type]:
    """The registered pruning strategy class of `name`; None for a strategy this installation lacks
    (e.g. a run made with a plug-in that is not installed here)."""
    from open_lth_concave.foundations.registry import UnknownNameError
    from open_lth_concave.pruning.strategy import registry
    try:
        return registry.get(name)
    except UnknownNameError:
        return None


def strategy_name(label: str) -> str:
    """`concave_l1 (pruning_mode=fraction)` -> `Concave ℓ1 (pruning_mode=fraction)` (the class's `display_name`)."""
    base, _, rest = label.partition(" ")
    cls = strategy_class(base)
    pretty = getattr(cls, "display_name", None) or base
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
