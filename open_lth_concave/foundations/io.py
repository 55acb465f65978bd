"""Crash-safe file writing and safe loading: readers never see half a file, loads never run code."""
from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from open_lth_concave.foundations.errors import MissingFileError, UserError


class CorruptFileError(UserError, RuntimeError):
    """A file that exists but cannot be read back (truncated, corrupted, wrong kind)."""


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write on rank 0 only (all ranks call this at the same points), then wait for it everywhere."""
    from open_lth_concave.foundations import distributed
    if distributed.is_writer():
        _write(Path(path), data)
    distributed.barrier()


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def remove(path: Path) -> None:
    """Delete a file (rank 0 only under torchrun); a missing file is fine."""
    from open_lth_concave.foundations import distributed
    if distributed.is_writer():
        Path(path).unlink(missing_ok=True)
    distributed.barrier()


def save_bytes(data: bytes, path: Path) -> None:
    _atomic_write_bytes(path, data)


def save_torch(obj: Any, path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    _atomic_write_bytes(path, buffer.getvalue())


def load_torch(path: Path, map_location: Any = "cpu") -> Any:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise MissingFileError(f"missing file {path}") from None
    except Exception as e:  # torch raises many kinds for a damaged archive
        raise CorruptFileError(f"cannot read {path}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None


def save_json(obj: Any, path: Path) -> None:
    _atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def load_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise MissingFileError(f"missing file {path}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise CorruptFileError(f"cannot read {path}: {e}") from None


def save_text(text: str, path: Path) -> None:
    _atomic_write_bytes(path, text.encode())
