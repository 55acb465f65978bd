"""Writing files: one atomic-write helper for every file the package writes; safe archive extraction."""
from __future__ import annotations

import io as _io
import re
import stat
import tarfile
from pathlib import Path

import pytest

from open_lth_concave.datasets import download
from open_lth_concave.foundations import io

PACKAGE = Path(__file__).resolve().parent.parent / "open_lth_concave"


def test_atomic_writer_replaces_whole_file_or_leaves_the_old_one(tmp_path):
    path = tmp_path / "sub" / "results.json"
    with io.atomic_writer(path) as f:
        f.write(b"old")
    assert path.read_bytes() == b"old"
    with pytest.raises(RuntimeError, match="disk full"):
        with io.atomic_writer(path) as f:
            f.write(b"new, but only ha")
            raise RuntimeError("disk full")
    assert path.read_bytes() == b"old"                          # untouched
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]  # no temporary file left
    with io.atomic_writer(path) as f:
        f.write(b"new")
    assert path.read_bytes() == b"new"


def test_one_atomic_write_helper_in_the_package():
    """Temporary-file-then-rename writing is implemented once (foundations/io.atomic_writer); the dataset
    download, the Tiny ImageNet cache and the comparison plot used to carry their own copies."""
    writers = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                     if re.search(r"mkstemp\(|\.tmp\.png|\.replace\(path\)", p.read_text()))
    assert writers == ["foundations/io.py"]


@pytest.mark.filterwarnings("ignore:No artists with labels")
def test_failed_plot_leaves_no_file_behind(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from open_lth_concave.report.plot import plot_comparison

    def broken_savefig(self, target, *args, **kwargs):
        target = open(target, "wb") if isinstance(target, (str, Path)) else target
        target.write(b"\x89PNG half")
        raise OSError("no space left on device")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    out = tmp_path / "cmp"
    out.mkdir()
    with pytest.raises(OSError, match="no space"):
        plot_comparison([], "heading", out / "comparison.png")
    assert list(out.iterdir()) == []


def _tar_with_modes(path: Path) -> Path:
    with tarfile.open(path, "w") as tf:
        for name, mode in (("data/tool", 0o4777), ("data/plain", 0o666)):
            info = tarfile.TarInfo(name)
            info.size, info.mode = 5, mode
            tf.addfile(info, _io.BytesIO(b"hello"))
    return path


@pytest.mark.skipif(not hasattr(tarfile, "data_filter"), reason="this Python's tarfile has no data filter")
def test_tar_extraction_goes_through_tarfiles_data_filter(tmp_path, monkeypatch):
    filters = []
    real = tarfile.TarFile.extractall

    def spy(self, *args, **kwargs):
        filters.append(kwargs.get("filter"))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(tarfile.TarFile, "extractall", spy)
    target = tmp_path / "out"
    download.safe_extract(_tar_with_modes(tmp_path / "a.tar"), target)
    assert filters == ["data"]
    assert (target / "data" / "tool").read_bytes() == b"hello"
    # the data filter keeps the owner's bits and drops setuid and group/other write
    assert stat.S_IMODE((target / "data" / "tool").stat().st_mode) == 0o755
    assert stat.S_IMODE((target / "data" / "plain").stat().st_mode) == 0o644


def test_tar_extraction_without_the_data_filter_keeps_our_checks(tmp_path, monkeypatch):
    """Pythons before 3.11.4 have no data filter: our own checks and writer still refuse and extract."""
    monkeypatch.delattr(tarfile, "data_filter", raising=False)
    target = tmp_path / "out"
    download.safe_extract(_tar_with_modes(tmp_path / "a.tar"), target)
    assert (target / "data" / "plain").read_bytes() == b"hello"
    assert not stat.S_IMODE((target / "data" / "tool").stat().st_mode) & stat.S_ISUID
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tf:
        info = tarfile.TarInfo("../evil")
        info.size = 1
        tf.addfile(info, _io.BytesIO(b"x"))
    with pytest.raises(download.UnsafeArchiveError, match="'..' path component"):
        download.safe_extract(evil, tmp_path / "out2")
    assert not (tmp_path / "evil").exists()
