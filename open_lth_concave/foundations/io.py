"""Crash-safe file writing (`atomic_writer`, used for every file this package writes) and safe loading:
readers never see half a file, loads never run code, and no read trusts a file whose content changed.

Every file written through `save_*` has the sha256 of its bytes recorded in its folder's
`.content_hashes.json` (written atomically after the file), and every `load_*` checks the bytes it reads
against it first: a flipped bit, an edited digit or a file swapped in from elsewhere is then a known fact
(`CorruptFileError` naming the file), which the callers recompute or refuse as for any damaged file.
A file the record does not name (written by an older version of this package, or by open_lth itself in a
checkout) is read as before, unchecked; a damaged record checks nothing and is rewritten by the next save."""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Optional

import torch

from open_lth_concave.foundations import layout
from open_lth_concave.foundations.errors import MissingFileError, UserError


class CorruptFileError(UserError, RuntimeError):
    """A file that exists but cannot be read back (truncated, corrupted, wrong kind)."""


class WriteError(UserError, OSError):
    """Writing a file failed (full disk, file-size limit, no permission, ...): names the path and the cause."""


def os_error_text(error: OSError) -> str:
    return error.strerror or type(error).__name__


def check_writable_folder(path: Path, what: str) -> None:
    """Before any work: `path` must be a folder that exists, or can be made, and can be written. Raises a
    UserError naming `what` (e.g. "--root"), the path and the cause."""
    path = Path(path).expanduser()
    existing = path
    while not existing.exists():
        if existing.is_symlink():
            raise UserError(f"invalid {what} {path}: {existing} is a dangling symbolic link")
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"invalid {what} {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"invalid {what} {path}: {existing} is not writable")


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write on rank 0 only (all ranks call this at the same points), then wait for it everywhere."""
    from open_lth_concave.foundations import distributed
    if distributed.is_writer():
        _write(Path(path), data)
    distributed.barrier()


def _write(path: Path, data: bytes) -> None:
    with atomic_writer(path) as f:
        f.write(data)
    _record_hash(path, hashlib.sha256(data).hexdigest())


def _hashes(folder: Path) -> dict:
    """The folder's recorded content hashes (name -> sha256); {} when there is no record or it is damaged."""
    try:
        record = json.loads((folder / layout.CONTENT_HASHES).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return record if isinstance(record, dict) else {}


def _record_hash(path: Path, digest: Optional[str]) -> None:
    """Record (or, with None, forget) a file's content hash in its folder's record, atomically."""
    record = _hashes(path.parent)
    if digest is None and path.name not in record:
        return
    if digest is None:
        record.pop(path.name)
    else:
        record[path.name] = digest
    with atomic_writer(path.parent / layout.CONTENT_HASHES) as f:
        f.write((json.dumps(record, indent=1, sort_keys=True) + "\n").encode())


def read_checked(path: Path) -> bytes:
    """A file's bytes, checked against the content hash recorded when this package wrote it."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise MissingFileError(f"missing file {path}") from None
    except IsADirectoryError:
        raise CorruptFileError(f"cannot read {path}: a folder, not a file") from None
    recorded = _hashes(path.parent).get(path.name)
    if recorded is not None and hashlib.sha256(data).hexdigest() != recorded:
        raise CorruptFileError(f"cannot use {path}: its content does not match the hash recorded when it was "
                               "written (changed or damaged since)")
    return data


@contextlib.contextmanager
def atomic_writer(path: Path) -> Iterator[BinaryIO]:
    """The one way this package writes a file: a binary file object on a temporary file beside `path`,
    flushed to disk and renamed over `path` only when the block ends without an error. On any error
    (or an interrupt) the temporary file is removed and `path` is left as it was, so a reader sees the
    old file or the whole new one, never half of one. Writes in every process that calls it; the
    `save_*` functions below call it on rank 0 only."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, 0o666 & ~_umask())  # as an ordinary new file (mkstemp makes it 0600)
    except OSError as e:
        raise WriteError(f"cannot write {path}: {os_error_text(e)}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        # the file system's refusals (full disk, size limit, permissions) are plain OSErrors with an errno;
        # the caller's own errors (e.g. a download's URLError, also an OSError) pass through as they are
        if type(e) in (OSError, PermissionError) and e.errno is not None:
            raise WriteError(f"cannot write {path}: {os_error_text(e)}") from None
        raise


def _umask() -> int:
    """The process's umask (read by setting it, then setting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def remove(path: Path) -> None:
    """Delete a file (rank 0 only under torchrun); a missing file is fine."""
    from open_lth_concave.foundations import distributed
    if distributed.is_writer():
        Path(path).unlink(missing_ok=True)
        _record_hash(Path(path), None)
    distributed.barrier()


def set_aside(path: Path, name: str) -> Path:
    """Move a file found unusable to `name` beside it (replacing an earlier one set aside there), so that
    nothing is lost and the run can start again (rank 0 only under torchrun); returns the new path."""
    from open_lth_concave.foundations import distributed
    target = Path(path).with_name(name)
    if distributed.is_writer():
        try:
            os.replace(path, target)
        except FileNotFoundError:
            pass
        _record_hash(Path(path), None)
    distributed.barrier()
    return target


def save_bytes(data: bytes, path: Path) -> None:
    _atomic_write_bytes(path, data)


def save_torch(obj: Any, path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    _atomic_write_bytes(path, buffer.getvalue())


def load_torch(path: Path, map_location: Any = "cpu") -> Any:
    data = read_checked(path)
    try:
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many kinds for a damaged archive
        raise CorruptFileError(f"cannot read {path}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None


def save_json(obj: Any, path: Path) -> None:
    _atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def load_json(path: Path) -> Any:
    data = read_checked(path)
    try:
        return json.loads(data.decode())
    except (ValueError, UnicodeDecodeError) as e:
        raise CorruptFileError(f"cannot read {path}: {e}") from None


def load_text(path: Path) -> str:
    data = read_checked(path)
    try:
        return data.decode()
    except UnicodeDecodeError as e:
        raise CorruptFileError(f"cannot read {path}: {e}") from None


def save_text(text: str, path: Path) -> None:
    _atomic_write_bytes(path, text.encode())
