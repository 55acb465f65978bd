"""Datasets: importing this package registers every built-in reader in `registry`."""
from open_lth_concave.datasets import cifar, digits, mnist, tiny_imagenet  # noqa: F401  (registration)
from open_lth_concave.datasets.base import DatasetMissingError, DatasetSpec, ImageData, register, registry

__all__ = ["DatasetMissingError", "DatasetSpec", "ImageData", "register", "registry"]
