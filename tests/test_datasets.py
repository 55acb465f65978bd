"""Readers on small files written in each dataset's real on-disk format, plus the download safety net."""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import shutil
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from open_lth_concave.datasets import DatasetMissingError, registry
from open_lth_concave.datasets import cifar, digits, download, mnist, tiny_imagenet
from open_lth_concave.foundations.io import CorruptFileError

from conftest import MNIST_SHARED as MNIST10K  # the repository-relative ../shared copy


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("OPEN_LTH_NO_DOWNLOAD", "1")


# ---------------------------------------------------------------- MNIST

def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_mnist(folder: Path, n_train: int, n_test: int, gz: bool, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        arrays[prefix] = (images, labels)
        for name, data in ((f"{prefix}-images-idx3-ubyte", idx_bytes(images, 0x803)),
                           (f"{prefix}-labels-idx1-ubyte", idx_bytes(labels, 0x801))):
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (folder / name).write_bytes(data)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("torchvision_layout", [False, True])
def test_mnist_reads_idx_files(tmp_path, gz, torchvision_layout):
    files = tmp_path / "MNIST" / "raw" if torchvision_layout else tmp_path
    arrays = write_mnist(files, n_train=7, n_test=3, gz=gz)
    for train, prefix in ((True, "train"), (False, "t10k")):
        data = mnist.load(tmp_path, train)
        images, labels = arrays[prefix]
        assert data.images.dtype == torch.uint8 and tuple(data.images.shape) == (len(images), 1, 28, 28)
        assert np.array_equal(data.images[:, 0].numpy(), images)
        assert data.labels.dtype == torch.int64 and data.labels.tolist() == labels.tolist()


def test_mnist_wrong_magic_names_the_file(tmp_path):
    write_mnist(tmp_path, 4, 2, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    raw = bytearray(path.read_bytes())
    raw[3] = 0x01  # 0x801: a labels magic where images are expected
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptFileError, match=r"train-images-idx3-ubyte: magic number 0x801, expected 0x803"):
        mnist.load(tmp_path, True)


def test_mnist_truncated_files_are_refused(tmp_path):
    write_mnist(tmp_path, 4, 2, gz=True)
    images = tmp_path / "t10k-images-idx3-ubyte.gz"
    full = gzip.decompress(images.read_bytes())
    images.write_bytes(gzip.compress(full[:-5]))
    with pytest.raises(CorruptFileError, match=r"t10k-images-idx3-ubyte.gz: 1563 data bytes, header \[2, 28, 28\] says 1568"):
        mnist.load(tmp_path, False)
    labels = tmp_path / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(labels.read_bytes()[:-6])  # cut the gzip stream itself
    with pytest.raises(CorruptFileError, match="train-labels-idx1-ubyte.gz: damaged gzip"):
        mnist.load(tmp_path, True)


def test_mnist_label_count_mismatch(tmp_path):
    write_mnist(tmp_path, 4, 2, gz=False)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(3, np.uint8), 0x801))
    with pytest.raises(CorruptFileError, match="holds 3 labels but .* holds 4 images"):
        mnist.load(tmp_path, True)


@pytest.mark.skipif(not MNIST10K.is_dir(), reason="shared MNIST-10k not present")
def test_real_mnist10k_counts_come_from_the_files():
    train, test = mnist.load(MNIST10K, True), mnist.load(MNIST10K, False)
    assert len(train) == 8000 and len(test) == 2000
    assert torch.bincount(train.labels, minlength=10).tolist() == [773, 905, 834, 803, 788, 723, 756, 813, 787, 818]
    assert torch.bincount(test.labels, minlength=10).tolist() == [207, 230, 198, 207, 194, 169, 202, 215, 187, 191]
    mean = train.images.float().div(255).mean().item()
    assert abs(mean - 0.1307) < 0.01  # the registered normalization fits the real data


# ---------------------------------------------------------------- CIFAR

def cifar_batch(rng, n: int, label_key: bytes, num_classes: int) -> dict:
    return {b"batch_label": b"testing", label_key: rng.integers(0, num_classes, n).tolist(),
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"filenames": [b"x.png"] * n}


def write_pickle(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=4))


def test_cifar10_reads_python_batches(tmp_path):
    rng = np.random.default_rng(1)
    sub = tmp_path / "cifar-10-batches-py"
    batches = [cifar_batch(rng, 2 + i, b"labels", 10) for i in range(5)]
    for i, batch in enumerate(batches, 1):
        write_pickle(sub / f"data_batch_{i}", batch)
    test = cifar_batch(rng, 3, b"labels", 10)
    write_pickle(sub / "test_batch", test)
    data = registry.get("cifar10").load(tmp_path, True)
    assert tuple(data.images.shape) == (2 + 3 + 4 + 5 + 6, 3, 32, 32)
    assert data.labels.tolist() == sum((b[b"labels"] for b in batches), [])
    # The 3072 bytes of a row are the red plane, then green, then blue, each row-major.
    row = batches[1][b"data"][1]
    assert np.array_equal(data.images[3, 1].numpy(), row[1024:2048].reshape(32, 32))
    test_data = registry.get("cifar10").load(tmp_path, False)
    assert test_data.labels.tolist() == test[b"labels"] and len(test_data) == 3


def test_cifar100_uses_fine_labels(tmp_path):
    rng = np.random.default_rng(2)
    sub = tmp_path / "cifar-100-python"
    train = cifar_batch(rng, 5, b"fine_labels", 100)
    train[b"coarse_labels"] = [0] * 5
    write_pickle(sub / "train", train)
    write_pickle(sub / "test", cifar_batch(rng, 2, b"fine_labels", 100))
    data = registry.get("cifar100").load(tmp_path, True)
    assert data.labels.tolist() == train[b"fine_labels"]
    assert np.array_equal(data.images.reshape(5, -1).numpy(), train[b"data"])


def test_cifar_bad_labels_are_refused(tmp_path):
    rng = np.random.default_rng(3)
    batch = cifar_batch(rng, 2, b"fine_labels", 100)
    batch[b"fine_labels"] = [3, 100]
    write_pickle(tmp_path / "cifar-100-python" / "test", batch)
    with pytest.raises(CorruptFileError, match=r"cifar-100-python/test: labels outside 0..99"):
        registry.get("cifar100").load(tmp_path, False)


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_restricted_unpickler_refuses_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil"
    path.write_bytes(pickle.dumps({b"data": _Payload(marker)}))
    assert pickle.loads(path.read_bytes()) == {b"data": None} and marker.is_dir()  # a plain unpickler runs it
    marker.rmdir()
    with pytest.raises(cifar.UnsafePickleError, match=r"evil: refusing to load global (posix|os|nt)\.mkdir"):
        cifar.restricted_load(path)
    assert not marker.exists()
    path.write_bytes(b"cos\nsystem\n(S'true'\ntR.")  # hand-written protocol-0 os.system call
    with pytest.raises(cifar.UnsafePickleError, match=r"os\.system"):
        cifar.restricted_load(path)


class Py2Pickler(pickle._Pickler):
    """Writes what Python 2's cPickle wrote for the official batches: str as BINSTRING, numpy.core globals."""
    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj):
        data = obj.encode("ascii") if isinstance(obj, str) else obj
        self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(data)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str

    def save_global(self, obj, name=None):
        module = "numpy" if obj in (np.ndarray, np.dtype) else "numpy.core.multiarray"
        self.write(pickle.GLOBAL + f"{module}\n{obj.__name__}\n".encode())
        self.memoize(obj)


def test_restricted_unpickler_reads_python2_style_batches(tmp_path):
    data = (np.arange(2 * 3072) % 251).astype(np.uint8).reshape(2, 3072)
    buffer = io.BytesIO()
    Py2Pickler(buffer, protocol=2).dump({"batch_label": "training batch 1 of 5", "data": data, "labels": [7, 2]})
    assert b"cnumpy.core.multiarray\n_reconstruct" in buffer.getvalue()
    sub = tmp_path / "cifar-10-batches-py"
    sub.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (sub / name).write_bytes(buffer.getvalue())
    loaded = registry.get("cifar10").load(tmp_path, True)
    assert loaded.labels.tolist() == [7, 2] * 5
    assert np.array_equal(loaded.images[:2].reshape(2, -1).numpy(), data)


# ---------------------------------------------------------------- Tiny ImageNet

def _jpeg(path: Path, color: tuple[int, int, int], size: int = 64) -> None:
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), color).save(path, quality=95)


def write_tiny_imagenet(folder: Path) -> dict[str, tuple[int, int, int]]:
    root = folder / "tiny-imagenet-200"
    root.mkdir(parents=True)
    (root / "wnids.txt").write_text("n02\nn01\n")  # unsorted on purpose: labels follow sorted wnids
    colors = {"n01": (200, 30, 30), "n02": (30, 30, 200)}
    for wnid, color in colors.items():
        for i in range(3):
            _jpeg(root / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", color)
    _jpeg(root / "val" / "images" / "val_0.JPEG", colors["n02"])
    _jpeg(root / "val" / "images" / "val_1.JPEG", colors["n01"])
    (root / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn02\t0\t0\t63\t63\nval_1.JPEG\tn01\t1\t2\t60\t61\n")
    return colors


def test_tiny_imagenet_decodes_and_caches(tmp_path):
    pytest.importorskip("PIL")
    colors = write_tiny_imagenet(tmp_path)
    train = tiny_imagenet.load(tmp_path, True)
    assert tuple(train.images.shape) == (6, 3, 64, 64) and train.labels.tolist() == [0, 0, 0, 1, 1, 1]
    mean_color = train.images[:3].float().mean(dim=(0, 2, 3))
    assert torch.allclose(mean_color, torch.tensor(colors["n01"], dtype=torch.float32), atol=3)
    val = tiny_imagenet.load(tmp_path, False)
    assert val.labels.tolist() == [1, 0]
    assert (tmp_path / "tiny_imagenet_train.npz").is_file() and (tmp_path / "tiny_imagenet_val.npz").is_file()
    shutil.rmtree(tmp_path / "tiny-imagenet-200")  # later loads need only the cache
    again = tiny_imagenet.load(tmp_path, True)
    assert torch.equal(again.images, train.images) and torch.equal(again.labels, train.labels)


def test_tiny_imagenet_wrong_size_is_refused(tmp_path):
    pytest.importorskip("PIL")
    write_tiny_imagenet(tmp_path)
    _jpeg(tmp_path / "tiny-imagenet-200" / "train" / "n01" / "images" / "n01_1.JPEG", (0, 0, 0), size=32)
    with pytest.raises(CorruptFileError, match=r"n01_1.JPEG: image is 32x32, expected 64x64"):
        tiny_imagenet.load(tmp_path, True)
    assert not (tmp_path / "tiny_imagenet_train.npz").exists()


# ---------------------------------------------------------------- digits

def test_digits_split_is_fixed_and_stratified():
    train, test = digits.load(Path("/nonexistent"), True), digits.load(Path("/nonexistent"), False)
    assert len(train) + len(test) == 1797 and len(test) == 360
    assert tuple(train.images.shape[1:]) == (1, 8, 8) and int(train.images.max()) == 255
    per_class_train = torch.bincount(train.labels, minlength=10)
    per_class_test = torch.bincount(test.labels, minlength=10)
    fraction = per_class_test.float() / (per_class_train + per_class_test).float()
    assert torch.all((fraction - 0.2).abs() < 0.01), fraction
    again = digits.load(Path("/nonexistent"), True)
    assert torch.equal(again.images, train.images) and torch.equal(again.labels, train.labels)
    # Pixels keep the 0..16 scale exactly: every value is round(v * 255 / 16) for an integer v.
    allowed = {round(v * 255 / 16) for v in range(17)}
    assert set(train.images.unique().tolist()) <= allowed


def test_digits_mean_std_constants_match_train_split():
    x = digits.load(Path("."), True).images.double() / 255
    assert abs(x.mean().item() - digits.MEAN) < 1e-4
    assert abs(x.std(unbiased=False).item() - digits.STD) < 1e-4


# ---------------------------------------------------------------- missing files and downloads

@pytest.mark.parametrize("name", ["mnist", "cifar10", "cifar100", "tiny_imagenet"])
def test_missing_files_raise_one_line_naming_the_folder(tmp_path, name):
    folder = tmp_path / name
    with pytest.raises(DatasetMissingError) as info:
        registry.get(name).load(folder, True)
    message = str(info.value)
    assert "\n" not in message and str(folder) in message and "OPEN_LTH_NO_DOWNLOAD=1" in message
    assert "http" in message  # says where to get them


def _tar(path: Path, members: list[tarfile.TarInfo], payload: bytes = b"x") -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for info in members:
            if info.isfile():
                info.size = len(payload)
                tf.addfile(info, io.BytesIO(payload))
            else:
                tf.addfile(info)
    return path


def _info(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


@pytest.mark.parametrize("member, why", [
    (_info("ok/../../evil"), "'..' path component"),
    (_info("../evil"), "'..' path component"),
    (_info("/tmp/evil_absolute"), "absolute path"),
    (_info("data/link", tarfile.SYMTYPE, "/etc/passwd"), "link to '/etc/passwd'"),
    (_info("data/hard", tarfile.LNKTYPE, "data/a"), "link to 'data/a'"),
    (_info("data/fifo", tarfile.FIFOTYPE), "not a regular file"),
])
def test_safe_extract_refuses_escaping_tar_members(tmp_path, member, why):
    archive = _tar(tmp_path / "a.tar.gz", [_info("data/a"), member])
    target = tmp_path / "out" / "target"
    with pytest.raises(download.UnsafeArchiveError, match=why) as info:
        download.safe_extract(archive, target)
    assert repr(member.name) in str(info.value)
    assert not (target / "data" / "a").exists()  # refused before anything was written
    assert not (tmp_path / "out" / "evil").exists() and not Path("/tmp/evil_absolute").exists()


def test_safe_extract_refuses_member_under_symlinked_folder(tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    (target / "escape").symlink_to(tmp_path)
    archive = _tar(tmp_path / "a.tar", [_info("escape/evil")])
    with pytest.raises(download.UnsafeArchiveError, match="resolves outside"):
        download.safe_extract(archive, target)


def test_safe_extract_zip(tmp_path):
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as zf:
        zf.writestr("root/sub/file.txt", "hello")
    download.safe_extract(good, tmp_path / "out")
    assert (tmp_path / "out" / "root" / "sub" / "file.txt").read_text() == "hello"
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("../evil.txt", "x")
    with pytest.raises(download.UnsafeArchiveError, match=r"'\.\./evil.txt'"):
        download.safe_extract(bad, tmp_path / "out2")
    assert not (tmp_path / "evil.txt").exists()


def test_fetch_verifies_md5_and_ensure_unpacks(tmp_path, monkeypatch):
    """A file:// URL exercises the whole download path without a network."""
    rng = np.random.default_rng(4)
    staging = tmp_path / "staging"
    write_pickle(staging / "cifar-100-python" / "train", cifar_batch(rng, 4, b"fine_labels", 100))
    write_pickle(staging / "cifar-100-python" / "test", cifar_batch(rng, 2, b"fine_labels", 100))
    archive = tmp_path / "c100.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(staging / "cifar-100-python", arcname="cifar-100-python")
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()

    folder = tmp_path / "cifar100"
    wrong = download.Source(archive.as_uri(), "0" * 32, "c.tar.gz")
    with pytest.raises(download.DownloadError, match="expected 00000000"):
        download.fetch(wrong, folder)
    assert list(folder.iterdir()) == []  # no partial or mismatched file left behind

    monkeypatch.delenv("OPEN_LTH_NO_DOWNLOAD")
    source = download.Source(archive.as_uri(), md5, "cifar-100-python.tar.gz", extract=True)
    download.ensure(folder, False, "cifar-100-python/train", [source], "how")
    assert sorted(p.name for p in folder.iterdir()) == ["cifar-100-python"]  # archive removed, no staging dir
    assert len(registry.get("cifar100").load(folder, True)) == 4

    bad = download.Source((tmp_path / "nope.tar.gz").as_uri(), md5, "x.tar.gz", extract=True)
    with pytest.raises(DatasetMissingError, match=r"download failed \(URLError"):
        download.ensure(tmp_path / "other", False, "files", [bad], "get them by hand")


# ---- tampered or empty files: one line naming the file, never a traceback --------------------------------------
@pytest.mark.parametrize("labels", [b"not numbers", {"a": 1}, 3, [[1, 2]], [2 ** 70, 1]])
def test_tampered_cifar_batch_is_one_line(tmp_path, labels):
    rng = np.random.default_rng(3)
    batch = cifar_batch(rng, 2, b"labels", 10)
    batch[b"labels"] = labels
    write_pickle(tmp_path / "cifar-10-batches-py" / "test_batch", batch)
    with pytest.raises(CorruptFileError, match=r"test_batch"):
        registry.get("cifar10").load(tmp_path, False)


def test_empty_cifar_batch_is_refused(tmp_path):
    rng = np.random.default_rng(3)
    batch = cifar_batch(rng, 0, b"labels", 10)
    write_pickle(tmp_path / "cifar-10-batches-py" / "test_batch", batch)
    with pytest.raises(CorruptFileError, match=r"test_batch: it holds no images"):
        registry.get("cifar10").load(tmp_path, False)


def test_mnist_with_zero_images_is_one_line_through_the_cli(tmp_path, capsys, monkeypatch):
    from open_lth_concave import cli
    write_mnist(tmp_path / "mnist", 0, 0, gz=False)
    monkeypatch.setenv("OPEN_LTH_DATASETS", str(tmp_path))
    monkeypatch.setenv("OPEN_LTH_ROOT", str(tmp_path / "results"))
    assert cli.main(["train", "--default_hparams=mnist_lenet_300_100", "--training_steps=1it", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "train-images-idx3-ubyte" in err and "no images" in err, err
    assert not (tmp_path / "results").exists()

