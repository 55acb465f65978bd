"""Fetching dataset archives: verified, atomic, and extracted without trusting member names.

Every reader calls `ensure(...)` when its files are missing. A failed or disabled download turns into
one `DatasetMissingError` line that says which folder, which files and where to get them, because
that line is all a user sees when a job dies on a machine without internet.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tarfile
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from open_lth_concave.datasets.base import DatasetMissingError
from open_lth_concave.foundations.errors import UserError
from open_lth_concave.foundations.io import atomic_writer

TIMEOUT_S = 20.0
_CHUNK = 1 << 20


class UnsafeArchiveError(UserError, ValueError):
    """An archive member that would land outside the target folder or is a link/device."""


class DownloadError(RuntimeError):
    """A download that failed or whose md5 did not match."""


@dataclass(frozen=True)
class Source:
    url: str
    md5: str
    filename: str          # name to save under in the dataset folder
    extract: bool = False  # unpack (tar/zip) into the dataset folder after verifying


def download_disabled() -> bool:
    return os.environ.get("OPEN_LTH_NO_DOWNLOAD", "").strip().lower() not in ("", "0", "false", "no")


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(source: Source, folder: Path, timeout: float = TIMEOUT_S) -> Path:
    """Download to a temporary name, check the md5, then rename: a crash never leaves a half file."""
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / source.filename
    if dest.exists() and md5_of(dest) == source.md5:
        return dest
    digest = hashlib.md5()
    with atomic_writer(dest) as out, urllib.request.urlopen(source.url, timeout=timeout) as response:
        for chunk in iter(lambda: response.read(_CHUNK), b""):
            digest.update(chunk)
            out.write(chunk)
        if digest.hexdigest() != source.md5:  # raised inside: the partial file is removed, dest untouched
            raise DownloadError(f"md5 of {source.url} is {digest.hexdigest()}, expected {source.md5}")
    return dest


def _check_member_name(name: str, target: Path) -> Path:
    """Where a member would land, refusing absolute paths, `..` and anything resolving outside target."""
    posix = name.replace("\\", "/")
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":") or PurePosixPath(posix).is_absolute():
        raise UnsafeArchiveError(f"refusing archive member {name!r}: absolute path")
    if ".." in PurePosixPath(posix).parts:
        raise UnsafeArchiveError(f"refusing archive member {name!r}: '..' path component")
    root = target.resolve()
    dest = (root / posix).resolve()
    if dest != root and root not in dest.parents:
        raise UnsafeArchiveError(f"refusing archive member {name!r}: resolves outside {root}")
    return dest


def _write_stream(stream, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "wb") as out:
        shutil.copyfileobj(stream, out, _CHUNK)


def safe_extract(archive: Path, target: Path) -> None:
    """Unpack a tar (any compression) or zip into target; every member is checked before anything is written.

    Our checks (no absolute or `..` names, nothing resolving outside target, no links, devices or other
    special members) run on every member first. A zip is then written member by member. A tar is
    extracted by `tarfile` with its "data" filter where Python has it (3.12, and 3.8.17/3.9.17/3.10.12/
    3.11.4 onwards), which repeats the path checks and also drops unsafe permission bits (setuid, group-
    and world-writable) and ownership; on older Pythons our own checks and writer are used.
    """
    target.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            plan = []
            for info in zf.infolist():
                dest = _check_member_name(info.filename, target)
                if stat.S_ISLNK(info.external_attr >> 16):
                    raise UnsafeArchiveError(f"refusing archive member {info.filename!r}: symbolic link")
                plan.append((info, dest))
            for info, dest in plan:
                if info.is_dir():
                    dest.mkdir(parents=True, exist_ok=True)
                else:
                    with zf.open(info) as stream:
                        _write_stream(stream, dest)
        return
    try:
        tf = tarfile.open(archive, "r:*")
    except tarfile.TarError as e:
        raise UnsafeArchiveError(f"{archive} is neither a zip nor a readable tar archive: {e}") from None
    with tf:
        plan = []
        for member in tf.getmembers():
            dest = _check_member_name(member.name, target)
            if member.issym() or member.islnk():
                raise UnsafeArchiveError(f"refusing archive member {member.name!r}: link to {member.linkname!r}")
            if not (member.isfile() or member.isdir()):
                raise UnsafeArchiveError(f"refusing archive member {member.name!r}: not a regular file or folder")
            plan.append((member, dest))
        if hasattr(tarfile, "data_filter"):
            try:
                tf.extractall(target, members=[member for member, _ in plan], filter="data")
            except tarfile.FilterError as e:
                raise UnsafeArchiveError(f"refusing archive member of {archive.name}: {e}") from None
            return
        for member, dest in plan:
            if member.isdir():
                dest.mkdir(parents=True, exist_ok=True)
            else:
                stream = tf.extractfile(member)
                assert stream is not None  # regular files always have a stream
                with stream:
                    _write_stream(stream, dest)


def _extract_atomically(archive: Path, folder: Path) -> None:
    """Unpack beside the target, then move the top-level entries in: an interrupted unpack leaves no half tree."""
    staging = Path(tempfile.mkdtemp(dir=folder, prefix=".extract."))
    try:
        safe_extract(archive, staging)
        for entry in staging.iterdir():
            dest = folder / entry.name
            if dest.is_dir() and not dest.is_symlink():
                shutil.rmtree(dest)
            elif dest.exists() or dest.is_symlink():
                dest.unlink()
            os.replace(entry, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def ensure(folder: Path, present: bool, expected: str, sources: list[Source], how: str) -> None:
    """Download (and unpack) `sources` into folder unless `present`; otherwise raise one clear line.

    `expected` names the files the reader needs; `how` tells a human where to get them by hand.
    """
    if present:
        return
    if download_disabled():
        reason = "downloads are disabled by OPEN_LTH_NO_DOWNLOAD=1"
    else:
        try:
            for source in sources:
                path = fetch(source, folder)
                if source.extract:
                    _extract_atomically(path, folder)
                    path.unlink()
            return
        except UnsafeArchiveError:
            raise
        except Exception as e:  # offline, DNS, HTTP, timeouts, bad md5: all mean "get them by hand"
            reason = f"download failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'no detail'})"
    raise DatasetMissingError(f"dataset files missing in {folder}: expected {expected}; {reason}; {how}")
