"""MNIST from IDX files (gzip or raw, flat or torchvision's MNIST/raw layout); counts come from the headers,
so smaller sets such as MNIST-10k work."""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch

from open_lth_concave.datasets import download
from open_lth_concave.datasets.base import DatasetMissingError, DatasetSpec, ImageData, register
from open_lth_concave.foundations.io import CorruptFileError

URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
IMAGES_MAGIC = 0x803
LABELS_MAGIC = 0x801
NUM_CLASSES = 10


def _split_names(train: bool) -> tuple[str, str]:
    prefix = "train" if train else "t10k"
    return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"


def find(folder: Path, name: str) -> Path | None:
    """The file `name` or `name.gz`, directly in folder or under torchvision's MNIST/raw/."""
    for directory in (folder, folder / "MNIST" / "raw"):
        for candidate in (directory / name, directory / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Parse an IDX file of unsigned bytes, checking the magic number and that the data length is exact."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as e:
            raise CorruptFileError(f"cannot read {path}: damaged gzip data ({e})") from None
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise CorruptFileError(f"cannot read {path}: {len(raw)} bytes is shorter than the {header}-byte IDX header")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise CorruptFileError(f"cannot read {path}: magic number {found:#x}, expected {magic:#x}")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    expected = int(np.prod(dims, dtype=np.int64))
    if len(raw) - header != expected:
        raise CorruptFileError(f"cannot read {path}: {len(raw) - header} data bytes, header {dims} says {expected}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def load(folder: Path, train: bool) -> ImageData:
    names = _split_names(train)
    paths = [find(folder, n) for n in names]
    if None in paths:
        expected = ", ".join(f"{n}[.gz]" for n in names) + " (directly or under MNIST/raw/)"
        sources = [download.Source(URL + f"{n}.gz", MD5[f"{n}.gz"], f"{n}.gz") for n, p in zip(names, paths) if p is None]
        download.ensure(folder, False, expected, sources, f"get them from {URL} into that folder")
        paths = [find(folder, n) for n in names]
        if None in paths:
            raise DatasetMissingError(f"dataset files missing in {folder}: expected {expected} after download")
    image_path, label_path = paths
    images = read_idx(image_path, IMAGES_MAGIC)
    labels = read_idx(label_path, LABELS_MAGIC)
    if images.shape[1:] != (28, 28):
        raise CorruptFileError(f"cannot read {image_path}: images are {images.shape[1]}x{images.shape[2]}, expected 28x28")
    if len(images) == 0:
        raise CorruptFileError(f"cannot use {image_path}: it holds no images (its header says 0)")
    if len(labels) != len(images):
        raise CorruptFileError(f"{label_path} holds {len(labels)} labels but {image_path} holds {len(images)} images")
    if len(labels) and labels.max() >= NUM_CLASSES:
        raise CorruptFileError(f"cannot read {label_path}: label {labels.max()} is not in 0..{NUM_CLASSES - 1}")
    return ImageData(torch.from_numpy(images[:, None].copy()), torch.from_numpy(labels.astype(np.int64)))


SPEC = register(DatasetSpec(name="mnist", num_classes=NUM_CLASSES, image_shape=(1, 28, 28), mean=(0.1307,),
                            std=(0.3081,), augment=False, load=load))
