"""The loader: hyperparameter transformations, and device batches that are exact, seeded and resumable."""
from __future__ import annotations

import gzip
import itertools

import numpy as np
import pytest
import torch

from open_lth_concave.datasets import DatasetSpec, ImageData, loader, registry
from open_lth_concave.datasets.loader import BatchLoader, load_dataset
from open_lth_concave.foundations.hparams import DatasetHparams
from open_lth_concave.foundations.registry import UnknownNameError


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("OPEN_LTH_NO_DOWNLOAD", "1")
    monkeypatch.setenv("OPEN_LTH_DATASETS", str(tmp_path / "datasets"))
    loader.clear_cache()
    yield
    loader.clear_cache()


def hparams(**kw) -> DatasetHparams:
    return DatasetHparams(dataset_name=kw.pop("dataset_name", "digits"), batch_size=kw.pop("batch_size", 64), **kw)


# ---------------------------------------------------------------- load_dataset

def test_unknown_dataset_lists_valid_names():
    with pytest.raises(UnknownNameError, match=r"unknown dataset 'imagenet' \(did you mean tiny_imagenet\?\); valid: .*digits.*mnist"):
        load_dataset(hparams(dataset_name="imagenet"), True, 0)


def test_reads_are_cached_per_process():
    spec, first = load_dataset(hparams(), True, 0)
    _, second = load_dataset(hparams(), True, 5)
    assert spec is registry.get("digits") and first is second and len(first) == 1437


def test_cache_is_keyed_by_folder(tmp_path, monkeypatch):
    def write(folder, n):
        folder.mkdir(parents=True)
        images = np.full((n, 28, 28), n, np.uint8)
        (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(
            (0x803).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in images.shape) + images.tobytes()))
        (folder / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(
            (0x801).to_bytes(4, "big") + n.to_bytes(4, "big") + bytes(n)))
    write(tmp_path / "a" / "mnist", 3)
    write(tmp_path / "b" / "mnist", 5)
    monkeypatch.setenv("OPEN_LTH_DATASETS", str(tmp_path / "a"))
    assert len(load_dataset(hparams(dataset_name="mnist"), True, 0)[1]) == 3
    monkeypatch.setenv("OPEN_LTH_DATASETS", str(tmp_path / "b"))
    assert len(load_dataset(hparams(dataset_name="mnist"), True, 0)[1]) == 5


def test_subsample_is_seeded_and_class_agnostic():
    _, full = load_dataset(hparams(), True, 0)
    _, a = load_dataset(hparams(subsample_fraction=0.25), True, 1)
    _, b = load_dataset(hparams(subsample_fraction=0.25), True, 1)
    _, c = load_dataset(hparams(subsample_fraction=0.25), True, 2)
    assert len(a) == round(1437 * 0.25) == 359
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    rows = {bytes(x.numpy()) for x in full.images}
    assert all(bytes(x.numpy()) in rows for x in a.images)  # real examples, not synthesized
    _, test = load_dataset(hparams(subsample_fraction=0.25), False, 1)
    assert len(test) == 360  # the test set is never subsampled


def test_random_labels_fraction():
    _, clean = load_dataset(hparams(), True, 0)
    _, none = load_dataset(hparams(random_labels_fraction=0.0), True, 0)
    _, half = load_dataset(hparams(random_labels_fraction=0.5), True, 3)
    _, half_again = load_dataset(hparams(random_labels_fraction=0.5), True, 3)
    assert torch.equal(none.labels, clean.labels)
    changed = (half.labels != clean.labels).float().mean().item()
    assert 0.5 * 0.9 - 0.06 < changed < 0.5 * 0.9 + 0.06  # 1 in 10 random labels equal the true one
    assert torch.equal(half.labels, half_again.labels) and torch.equal(half.images, clean.images)
    assert clean.labels.max() < 10 and half.labels.max() < 10 and half.labels.min() >= 0


def test_blur_averages_blocks_and_upsamples():
    image = torch.zeros(1, 1, 4, 4, dtype=torch.uint8)
    image[0, 0, :2, :2] = 200  # one 2x2 block; pooled it is [[200, 0], [0, 0]]
    blurred = loader.blur(ImageData(image, torch.zeros(1, dtype=torch.long)), 2).images[0, 0]
    # Bilinear upsampling of [[200, 0], [0, 0]] to 4x4 (half-pixel centres): corner 200, then 150, 50, 0.
    assert blurred[0].tolist() == [200, 150, 50, 0]
    assert blurred[:, 0].tolist() == [200, 150, 50, 0]
    assert blurred[1, 1].item() == round(200 * 0.75 * 0.75) and blurred.dtype == torch.uint8
    _, clean = load_dataset(hparams(), True, 0)
    _, b1 = load_dataset(hparams(blur_factor=1), True, 0)
    _, b4 = load_dataset(hparams(blur_factor=4), True, 0)
    assert torch.equal(b1.images, clean.images)
    assert b4.images.shape == clean.images.shape and not torch.equal(b4.images, clean.images)
    # Blurring keeps the block means of the 8x8 digits close (pooling is mean preserving).
    pooled = torch.nn.functional.avg_pool2d
    diff = (pooled(b4.images.float(), 4) - pooled(clean.images.float(), 4)).abs().mean().item()
    assert diff < 12


# ---------------------------------------------------------------- BatchLoader

def synthetic(n: int = 37, channels: int = 3, size: int = 8) -> tuple[ImageData, DatasetSpec]:
    """Images with distinct random content; the label is the example's index, so batches reveal identity."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(1, 256, (n, channels, size, size), generator=g, dtype=torch.uint8)
    spec = DatasetSpec(name="synthetic", num_classes=n, image_shape=(channels, size, size), mean=(0.5,) * channels,
                       std=(0.25,) * channels, augment=True, load=lambda folder, train: None)
    return ImageData(images, torch.arange(n)), spec


def unnormalize(x: torch.Tensor, spec: DatasetSpec) -> torch.Tensor:
    mean = torch.tensor(spec.mean).view(1, -1, 1, 1)
    std = torch.tensor(spec.std).view(1, -1, 1, 1)
    return ((x * std + mean) * 255).round().to(torch.uint8)


def collect(batches) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x.clone(), y.clone()) for x, y in batches]


@pytest.mark.parametrize("augment", [False, True])
def test_each_epoch_covers_every_example_once(augment):
    data, spec = synthetic()
    bl = BatchLoader(data, spec, 8, "cpu", train=True, augment=augment, seed=1)
    assert bl.num_examples == 37 and bl.iterations_per_epoch == 5
    batches = collect(bl.batches(0))
    assert [len(y) for _, y in batches] == [8, 8, 8, 8, 5]
    assert sorted(torch.cat([y for _, y in batches]).tolist()) == list(range(37))
    x, y = batches[0]
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and tuple(x.shape) == (8, 3, 8, 8)
    if not augment:
        assert torch.equal(unnormalize(x, spec), data.images[y])


def test_orders_are_seeded_per_epoch():
    data, spec = synthetic()
    order = lambda seed, epoch: torch.cat([y for _, y in BatchLoader(  # noqa: E731
        data, spec, 8, "cpu", train=True, augment=True, seed=seed).batches(epoch)]).tolist()
    assert order(1, 0) == order(1, 0)
    assert order(1, 0) != order(1, 1) and order(1, 1) != order(1, 2)
    assert order(1, 0) != order(2, 0)
    assert order(1, 1) != order(2, 0)  # seeds are hashed, not added: no shifted copies across replicates


def test_same_seed_gives_identical_augmented_batches():
    data, spec = synthetic()
    a = collect(BatchLoader(data, spec, 8, "cpu", train=True, augment=True, seed=3).batches(4))
    b = collect(BatchLoader(data, spec, 8, "cpu", train=True, augment=True, seed=3).batches(4))
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))


@pytest.mark.parametrize("start", [1, 3, 5])
def test_resuming_mid_epoch_reproduces_the_rest(start):
    data, spec = synthetic()
    bl = BatchLoader(data, spec, 8, "cpu", train=True, augment=True, seed=7)
    full = collect(bl.batches(2))
    resumed = collect(BatchLoader(data, spec, 8, "cpu", train=True, augment=True, seed=7).batches(2, start))
    assert len(resumed) == 5 - start
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(full[start:], resumed))
    with pytest.raises(ValueError, match="invalid start_iteration 6: must be in 0..5"):
        next(bl.batches(0, 6))


def slow_crop(image: torch.Tensor, dy: int, dx: int, flip: bool) -> torch.Tensor:
    padded = torch.zeros(image.shape[0], image.shape[1] + 8, image.shape[2] + 8, dtype=image.dtype)
    padded[:, 4:-4, 4:-4] = image
    out = padded[:, dy:dy + image.shape[1], dx:dx + image.shape[2]]
    return out.flip(-1) if flip else out


def test_batched_crop_matches_slow_reference():
    data, spec = synthetic(n=6, size=10)
    bl = BatchLoader(data, spec, 6, "cpu", train=True, augment=True, seed=0)
    idx = torch.tensor([4, 0, 2, 5])
    dy, dx = torch.tensor([0, 8, 3, 4]), torch.tensor([8, 0, 5, 4])
    flip = torch.tensor([False, True, True, True])
    out = bl._crop_flip(idx, dy, dx, flip)
    for k in range(4):
        expected = slow_crop(data.images[idx[k]], int(dy[k]), int(dx[k]), bool(flip[k]))
        assert torch.equal(out[k], expected), k
    assert torch.equal(out[3], data.images[5].flip(-1))  # centred crop + flip is a plain mirror image
    # dy=0, dx=8: the content moves down 4 and left 4, with zero padding entering at the top and right.
    assert (out[0][:, :4] == 0).all() and (out[0][:, :, -4:] == 0).all()
    assert torch.equal(out[0][:, 4:, :6], data.images[4][:, :6, 4:])


def test_augmented_batches_are_real_crops_with_all_offsets():
    data, spec = synthetic(n=120, channels=1, size=6)
    bl = BatchLoader(data, spec, 32, "cpu", train=True, augment=True, seed=5)
    seen = []
    for x, y in bl.batches(0):
        for image, label in zip(unnormalize(x, spec), y.tolist()):
            matches = [(dy, dx, f) for dy, dx, f in itertools.product(range(9), range(9), (False, True))
                       if torch.equal(image, slow_crop(data.images[label], dy, dx, f))]
            assert len(matches) == 1, (label, matches)
            seen.append(matches[0])
    assert {dy for dy, _, _ in seen} == set(range(9)) and {dx for _, dx, _ in seen} == set(range(9))
    flipped = sum(f for _, _, f in seen)
    assert 40 < flipped < 80  # about half of 120


def test_evaluation_order_is_fixed_and_unaugmented():
    data, spec = synthetic()
    bl = BatchLoader(data, spec, 10, "cpu", train=False, augment=True, seed=0)
    batches = collect(bl.batches(0))
    assert torch.cat([y for _, y in batches]).tolist() == list(range(37))
    assert torch.equal(unnormalize(torch.cat([x for x, _ in batches]), spec), data.images)
    again = collect(bl.batches(9, start_iteration=2))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches[2:], again))


def test_normalization_on_digits_train_set():
    spec, data = load_dataset(hparams(), True, 0)
    bl = BatchLoader(data, spec, 500, "cpu", train=False, augment=False, seed=0)
    x = torch.cat([x for x, _ in bl.batches(0)]).double()
    assert tuple(x.shape) == (1437, 1, 8, 8)
    assert abs(x.mean().item()) < 1e-3 and abs(x.std(unbiased=False).item() - 1) < 1e-3
    manual = ((data.images.double() / 255) - spec.mean[0]) / spec.std[0]
    assert torch.allclose(x, manual, atol=1e-5)


def test_channels_last_and_bad_arguments():
    data, spec = synthetic()
    x, _ = next(BatchLoader(data, spec, 8, "cpu", train=True, augment=True, seed=0, channels_last=True).batches(0))
    assert x.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="invalid batch_size 0"):
        BatchLoader(data, spec, 0, "cpu", train=True, augment=False, seed=0)
