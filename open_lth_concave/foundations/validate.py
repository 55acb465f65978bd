"""Checks of what a file read back holds, against what it must hold. Each raises `io.CorruptFileError`
with one line naming the file and what is wrong; the caller decides whether to recompute or refuse.

Used for every file the tool reads back from an experiment: state dicts against the model they belong to
(keys, shapes, finite values), masks (every prunable tensor, 0/1 values), relaxed masks (finite, in
[0, 1]), and the small JSON records (their fields and types).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from open_lth_concave.foundations.io import CorruptFileError


def _fail(path: Path, what: str) -> CorruptFileError:
    return CorruptFileError(f"cannot use {path}: {what}")


def tensors(obj: Any, path: Path, reference: Mapping[str, Any], what: str = "state dict",
            values: Optional[str] = None, exact: bool = True) -> dict[str, torch.Tensor]:
    """`obj` must be a dict name -> tensor with exactly the names of `reference` (or a subset when
    not `exact`), each of the reference's shape; floating values finite. `values`: "binary" (only 0 and
    1) or "unit" (within [0, 1]). `reference` maps names to tensors or shapes."""
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise _fail(path, f"not a {what} (a dict of named tensors)")
    shapes = {k: tuple(v.shape) if isinstance(v, torch.Tensor) else tuple(v) for k, v in reference.items()}
    missing = [k for k in shapes if k not in obj]
    if missing and exact:
        raise _fail(path, f"the {what} lacks {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    extra = [k for k in obj if k not in shapes]
    if extra:
        raise _fail(path, f"the {what} has {extra[0]}, which the model does not have")
    for name, value in obj.items():
        if tuple(value.shape) != shapes[name]:
            raise _fail(path, f"{name} has shape {tuple(value.shape)} in the {what}, the model's is {shapes[name]}")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise _fail(path, f"{name} holds NaN or infinite values")
        if values == "binary" and not bool(((value == 0) | (value == 1)).all()):
            raise _fail(path, f"{name} holds values other than 0 and 1")
        if values == "unit" and not bool(((value >= 0) & (value <= 1)).all()):
            raise _fail(path, f"{name} holds values outside [0, 1]")
    return obj


def all_finite(obj: Any, path: Path, what: str, where: str = "") -> None:
    """Every floating tensor anywhere inside `obj` (nested dicts, lists, tuples) finite."""
    if isinstance(obj, torch.Tensor):
        if obj.is_floating_point() and not bool(torch.isfinite(obj).all()):
            raise _fail(path, f"the {what} holds NaN or infinite values{' at ' + where if where else ''}")
    elif isinstance(obj, dict):
        for key, value in obj.items():
            all_finite(value, path, what, f"{where}.{key}" if where else str(key))
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            all_finite(value, path, what, f"{where}[{i}]")


def number(value: Any, *, integer: bool = False, minimum: Optional[float] = None) -> bool:
    """A JSON number (not a bool), finite, integral if asked, >= minimum if given."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    if integer and not float(value).is_integer():
        return False
    return minimum is None or value >= minimum


def record(obj: Any, path: Path, fields: Mapping[str, Any], what: str) -> dict:
    """A JSON object whose `fields` (name -> check: a callable on the value) all hold; other keys are kept."""
    if not isinstance(obj, dict):
        raise _fail(path, f"not a {what} (a JSON object)")
    for name, check in fields.items():
        if name not in obj:
            raise _fail(path, f"the {what} lacks {name!r}")
        if not check(obj[name]):
            raise _fail(path, f"{name!r} in the {what} is {obj[name]!r}, which is not allowed")
    return obj
