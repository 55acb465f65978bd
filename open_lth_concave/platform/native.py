"""Small C kernels, compiled on first use with the system's C compiler and loaded with ctypes.

For work that eager PyTorch can only do as several passes over memory (each op reads and writes
whole tensors) and that a single loop does in one: e.g. a plug-in's update of its own tensors. A
kernel is plain C over raw float pointers; `load(name, source)` compiles it once per machine into a
cache folder (`$OPEN_LTH_CACHE` or `$XDG_CACHE_HOME/open_lth_concave` or `~/.cache/open_lth_concave`,
under `native/`, named by a hash of the source, the flags, the compiler and the machine; written to a
temporary file and renamed, so concurrent runs never see half a file; its hash is kept next to it and
a file that does not match is built again) and returns the loaded library, or None where kernels are
off (`--native_kernels=off`), on a platform other than Linux or macOS, or when compiling fails (one
warning line says why). Callers keep an eager PyTorch path for None: a kernel is a speed-up, never a
requirement.

No `-march=native`: the cached library must run on any machine sharing the cache; a kernel that gains
from wider vectors selects them at load time itself (`target_clones`, as concave/native_step.py does).
`-ffp-contract=off` keeps each multiply and add rounded on its own, as eager PyTorch's elementwise
ops round them, so results agree to float tolerance.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform as _platform
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Optional

FLAGS = ["-O3", "-shared", "-fPIC", "-ffp-contract=off", "-fno-math-errno"]
MODES = ("auto", "off")
_mode = "auto"
_loaded: dict[str, Optional[ctypes.CDLL]] = {}


def set_mode(mode: str) -> None:
    """auto: compile and use kernels; off: never (callers take their eager path). Set by Platform.apply."""
    global _mode
    if mode not in MODES:
        raise ValueError(f"invalid native kernel mode {mode!r}; valid: {', '.join(MODES)}")
    _mode = mode


def enabled() -> bool:
    return _mode == "auto" and sys.platform.startswith(("linux", "darwin"))


def compiler() -> Optional[str]:
    name = os.environ.get("CC") or "cc"
    return shutil.which(name)


def cache_dir() -> Path:
    root = os.environ.get("OPEN_LTH_CACHE")
    if root:
        return Path(root) / "native"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "open_lth_concave" / "native"


def _compiler_id(cc: str) -> str:
    try:
        out = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30)
        return out.stdout.splitlines()[0] if out.stdout else cc
    except (OSError, subprocess.SubprocessError):
        return cc


def load(name: str, source: str) -> Optional[ctypes.CDLL]:
    """The compiled library of `source` (C), or None (see the module doc). Cached per process and on disk."""
    if not enabled():
        return None
    key = name + "\0" + source
    if key in _loaded:
        return _loaded[key]
    lib = None
    try:
        lib = _build(name, source)
    except Exception as e:  # noqa: BLE001 - any failure means: no kernel, the eager path
        warnings.warn(f"native kernel {name!r} unavailable, using eager PyTorch: {e}", RuntimeWarning, stacklevel=2)
    _loaded[key] = lib
    return lib


def _build(name: str, source: str) -> ctypes.CDLL:
    cc = compiler()
    if cc is None:
        raise RuntimeError("no C compiler found (set CC, or --native_kernels=off to silence this)")
    digest = hashlib.sha256("\0".join([source, " ".join(FLAGS), _compiler_id(cc), _platform.machine(),
                                       sys.platform]).encode()).hexdigest()[:20]
    target = cache_dir() / f"{name}-{digest}.so"
    if target.exists():
        # read back only what this code wrote: the library's hash is kept next to it (a file cut short or
        # changed is built again)
        check = target.with_suffix(".sha256")
        try:
            if check.read_text().strip() == _file_hash(target):
                return ctypes.CDLL(str(target))
        except OSError:
            pass
        target.unlink(missing_ok=True)
    if not target.exists():
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            folder = target.parent
        except OSError:
            folder = Path(tempfile.mkdtemp(prefix="open_lth_native_"))
            target = folder / target.name
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            c_file, so_file = Path(tmp) / f"{name}.c", Path(tmp) / f"{name}.so"
            c_file.write_text(source)
            out = subprocess.run([cc, *FLAGS, "-o", str(so_file), str(c_file), "-lm"],
                                 capture_output=True, text=True, timeout=120)
            if out.returncode != 0:
                raise RuntimeError(f"{cc} failed: {(out.stderr or out.stdout).strip().splitlines()[-1:]}")
            hash_file = Path(tmp) / "hash"
            hash_file.write_text(_file_hash(so_file))
            os.replace(hash_file, target.with_suffix(".sha256"))
            os.replace(so_file, target)
    return ctypes.CDLL(str(target))


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
