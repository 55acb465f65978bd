"""Tiny ImageNet (200 classes, 64x64): JPEGs are decoded once with Pillow and cached as .npz beside
them, because decoding 110k JPEGs on every run would dominate short experiments."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from open_lth_concave.datasets import download
from open_lth_concave.datasets.base import DatasetMissingError, DatasetSpec, ImageData, register
from open_lth_concave.foundations.io import CorruptFileError, atomic_writer

SUBDIR = "tiny-imagenet-200"
SIZE = 64
SOURCE = download.Source("http://cs231n.stanford.edu/tiny-imagenet-200.zip", "90528d7ca1a48142e341f4ef8d21d0de",
                         "tiny-imagenet-200.zip", extract=True)


def cache_path(folder: Path, train: bool) -> Path:
    return folder / f"tiny_imagenet_{'train' if train else 'val'}.npz"


def _read_wnids(root: Path) -> list[str]:
    wnids = [line.strip() for line in (root / "wnids.txt").read_text().splitlines() if line.strip()]
    if len(set(wnids)) != len(wnids) or not wnids:
        raise CorruptFileError(f"cannot read {root / 'wnids.txt'}: empty or has duplicate class ids")
    return sorted(wnids)


def _listing(root: Path, train: bool, index: dict[str, int]) -> list[tuple[Path, int]]:
    """(JPEG path, label) in a fixed order: sorted by class then file name (train), or by file name (val)."""
    if train:
        return [(p, label) for wnid, label in sorted(index.items(), key=lambda kv: kv[1])
                for p in sorted((root / "train" / wnid / "images").glob("*.JPEG"))]
    annotations = root / "val" / "val_annotations.txt"
    out = []
    for number, line in enumerate(annotations.read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in index:
            raise CorruptFileError(f"cannot read {annotations} line {number}: expected 'file<TAB>wnid...' with a wnid from wnids.txt")
        out.append((root / "val" / "images" / fields[0], index[fields[1]]))
    return sorted(out)


def _decode(items: list[tuple[Path, int]]) -> tuple[np.ndarray, np.ndarray]:
    try:
        from PIL import Image
    except ImportError:
        raise DatasetMissingError("decoding Tiny ImageNet JPEGs needs Pillow: pip install pillow") from None
    images = np.empty((len(items), 3, SIZE, SIZE), dtype=np.uint8)
    for i, (path, _) in enumerate(items):
        try:
            with Image.open(path) as img:
                array = np.asarray(img.convert("RGB"))
        except (OSError, ValueError) as e:
            raise CorruptFileError(f"cannot read {path}: {e}") from None
        if array.shape != (SIZE, SIZE, 3):
            raise CorruptFileError(f"cannot read {path}: image is {array.shape[1]}x{array.shape[0]}, expected {SIZE}x{SIZE}")
        images[i] = array.transpose(2, 0, 1)
    return images, np.array([label for _, label in items], dtype=np.int64)


def _save_cache(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    with atomic_writer(path) as f:
        np.savez(f, images=images, labels=labels)


def load(folder: Path, train: bool) -> ImageData:
    cached = cache_path(folder, train)
    if cached.is_file():
        try:
            with np.load(cached, allow_pickle=False) as npz:
                return ImageData(torch.from_numpy(npz["images"]), torch.from_numpy(npz["labels"]))
        except (OSError, ValueError, KeyError) as e:
            raise CorruptFileError(f"cannot read {cached}: {e}; delete it to rebuild from the JPEGs") from None
    root = folder / SUBDIR
    needed = root / "wnids.txt", root / ("train" if train else "val")
    expected = f"{SUBDIR}/wnids.txt, {SUBDIR}/{'train/<wnid>/images/*.JPEG' if train else 'val/images + val/val_annotations.txt'}"
    if not all(p.exists() for p in needed):
        download.ensure(folder, False, expected, [SOURCE], f"download {SOURCE.url} and unzip it into that folder")
        if not all(p.exists() for p in needed):
            raise DatasetMissingError(f"dataset files missing in {folder}: expected {expected} after download")
    wnids = _read_wnids(root)
    items = _listing(root, train, {w: i for i, w in enumerate(wnids)})
    if not items:
        raise DatasetMissingError(f"dataset files missing in {folder}: no JPEGs found for {expected}")
    images, labels = _decode(items)
    _save_cache(cached, images, labels)
    return ImageData(torch.from_numpy(images), torch.from_numpy(labels))


SPEC = register(DatasetSpec(name="tiny_imagenet", num_classes=200, image_shape=(3, SIZE, SIZE),
                            mean=(0.4802, 0.4481, 0.3975), std=(0.2770, 0.2691, 0.2821), augment=True, load=load))
