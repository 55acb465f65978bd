"""platform/native.py: a C kernel is compiled once, cached by hash, checked when read back, and where it cannot
be had the caller gets None (and one warning), never an error."""
from __future__ import annotations

import ctypes
import subprocess
import warnings

import pytest

from open_lth_concave.platform import native

SOURCE = "void axpy(long n, float a, const float *x, float *y) { for (long i = 0; i < n; i++) y[i] += a * x[i]; }\n"
needs_compiler = pytest.mark.skipif(native.compiler() is None, reason="no C compiler here")


@pytest.fixture(autouse=True)
def fresh(monkeypatch, tmp_path):
    monkeypatch.setattr(native, "_loaded", {})
    monkeypatch.setenv("OPEN_LTH_CACHE", str(tmp_path / "cache"))
    native.set_mode("auto")
    yield
    native.set_mode("auto")


def _axpy(lib) -> list[float]:
    f = lib.axpy
    f.argtypes = [ctypes.c_long, ctypes.c_float, ctypes.c_void_p, ctypes.c_void_p]
    x, y = (ctypes.c_float * 3)(1, 2, 3), (ctypes.c_float * 3)(10, 20, 30)
    f(3, 0.5, ctypes.addressof(x), ctypes.addressof(y))
    return list(y)


@needs_compiler
def test_compiled_once_then_read_from_the_cache(monkeypatch, tmp_path):
    assert _axpy(native.load("axpy", SOURCE)) == [10.5, 21.0, 31.5]
    (built,) = list((tmp_path / "cache" / "native").glob("axpy-*.so"))
    assert built.with_suffix(".sha256").exists()
    # a new process (empty in-memory table) with no compiler at all still loads the cached library
    monkeypatch.setattr(native, "_loaded", {})
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: (_ for _ in ()).throw(AssertionError("compiled again")))
    monkeypatch.setattr(native, "_compiler_id", lambda cc: native_id)
    assert _axpy(native.load("axpy", SOURCE)) == [10.5, 21.0, 31.5]


native_id = None


@pytest.fixture(autouse=True)
def compiler_id():
    global native_id
    cc = native.compiler()
    native_id = native._compiler_id(cc) if cc else None


@needs_compiler
def test_a_damaged_cache_file_is_built_again(monkeypatch, tmp_path):
    native.load("axpy", SOURCE)
    (built,) = list((tmp_path / "cache" / "native").glob("axpy-*.so"))
    good = built.read_bytes()
    cut = built.with_name("cut")
    cut.write_bytes(good[: len(good) // 2])      # cut short (a new file: this process maps the old one)
    cut.replace(built)
    monkeypatch.setattr(native, "_loaded", {})
    assert _axpy(native.load("axpy", SOURCE)) == [10.5, 21.0, 31.5]
    assert native._file_hash(built) == built.with_suffix(".sha256").read_text().strip()
    assert len(built.read_bytes()) > len(good) // 2


def test_off_no_compiler_or_a_failing_compiler_give_none_with_one_warning(monkeypatch):
    native.set_mode("off")
    assert native.load("axpy", SOURCE) is None
    native.set_mode("auto")
    monkeypatch.setenv("CC", "no-such-compiler-here")
    with pytest.warns(RuntimeWarning, match="native kernel 'axpy' unavailable.*no C compiler"):
        assert native.load("axpy", SOURCE) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert native.load("axpy", SOURCE) is None      # remembered: no second warning in this process
    monkeypatch.setattr(native, "_loaded", {})
    monkeypatch.setenv("CC", "false")
    with pytest.warns(RuntimeWarning, match="false failed"):
        assert native.load("axpy", SOURCE) is None
    with pytest.raises(ValueError, match="valid: auto, off"):
        native.set_mode("sometimes")


@needs_compiler
def test_a_silently_changed_cache_file_is_not_loaded_but_built_again(monkeypatch, tmp_path):
    native.load("axpy", SOURCE)
    (built,) = list((tmp_path / "cache" / "native").glob("axpy-*.so"))
    good = built.read_bytes()
    at = good.find(b"GCC")
    if at < 0:
        pytest.skip("this compiler leaves no version string to change harmlessly")
    changed = built.with_name("changed")
    changed.write_bytes(good[:at] + b"gcc" + good[at + 3:])   # same length, still loadable: only the hash tells
    changed.replace(built)
    monkeypatch.setattr(native, "_loaded", {})
    assert _axpy(native.load("axpy", SOURCE)) == [10.5, 21.0, 31.5]
    assert built.read_bytes()[at:at + 3] == b"GCC"
