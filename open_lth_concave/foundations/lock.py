"""One process per experiment replicate: an OS-level lock on a file in the folder.

Two `lottery` (or `compare`) processes pointed at the same experiment must not both train it: the
second waits for the first (or, with `wait=False`, reports who holds it). The lock is `fcntl.flock` on
`<folder>/.lock`: the kernel grants it to exactly one open file at a time and drops it when its holder
exits, however it exits (killed, crashed), so a dead holder never needs to be detected, and two
processes that arrive at the same moment can never both get it; a stopped (SIGSTOP) holder still holds
it. The file also says who holds it (pid, host, since) for the waiting message. The holder removes the
file while it still holds the lock; a taker checks that the file it locked is still the one at the path
(else it locked a removed file, and tries again).

What the OS cannot see is a holder on another host whose file system does not share locks between
hosts: such a holder is recognised by its record (another host) and its heartbeat (the file's
modification time, refreshed every few seconds by a background thread) being younger than
`stale_after`.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import stat
import threading
import time
from pathlib import Path
from typing import Optional

from open_lth_concave.foundations import layout
from open_lth_concave.foundations.errors import UserError


class LockHeldError(UserError, RuntimeError):
    """Another live process holds the experiment."""


class LockFileError(UserError, OSError):
    """The lock's path holds something other than a regular file (a link, a folder, a FIFO)."""


class ExperimentLock:
    def __init__(self, folder: Path, heartbeat: float = 5.0, stale_after: float = 120.0):
        self.path = Path(folder) / layout.LOCK
        self.heartbeat = heartbeat
        self.stale_after = stale_after
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._fd: Optional[int] = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def holder(self) -> Optional[dict]:
        """Who holds (or last held) the lock, as recorded in the file; None when unknown."""
        try:
            info = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return info if isinstance(info, dict) else None

    def _held_on_another_host(self, fd: int) -> bool:
        """The record names a live holder on another host (fresh heartbeat) that our kernel cannot see."""
        try:
            raw = os.pread(fd, 4096, 0)
            info = json.loads(raw.decode()) if raw else None
            age = time.time() - os.fstat(fd).st_mtime
        except (OSError, ValueError):
            return False
        return isinstance(info, dict) and info.get("host") not in (None, socket.gethostname()) and \
            age <= self.stale_after

    def _open(self) -> int:
        """The lock file, opened for writing only if it is a regular file at the path itself: a link there
        (planted or left by a copy) would make the holder record overwrite whatever it points to."""
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.EMLINK):
                raise LockFileError(f"{self.path} is a symbolic link; the experiment lock is never written "
                                    "through a link: remove it and run again") from None
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise LockFileError(f"{self.path} is not a regular file; remove it and run again")
        return fd

    def _try_acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    return False
                raise
            try:  # the holder before us may have removed the file after we opened it: lock the current one
                here, now = os.fstat(fd), os.stat(self.path)
                current = (here.st_ino, here.st_dev) == (now.st_ino, now.st_dev)
            except FileNotFoundError:
                current = False
            if not current:
                os.close(fd)
                continue
            if self._held_on_another_host(fd):
                os.close(fd)
                return False
            record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, record, 0)
            self._fd = fd
            return True

    def acquire(self, wait: bool = True, poll: float = 2.0, on_wait=None) -> "ExperimentLock":
        from open_lth_concave.foundations import distributed
        if not distributed.is_writer():  # under torchrun, rank 0 holds the lock for the group
            distributed.barrier()
            return self
        self._acquire(wait, poll, on_wait)
        distributed.barrier()
        return self

    def _acquire(self, wait: bool, poll: float, on_wait) -> None:
        announced = False
        while not self._try_acquire():
            info = self.holder() or {}
            message = (f"experiment {self.path.parent} is being run by pid {info.get('pid', '?')} on "
                       f"{info.get('host', '?')}")
            if not wait:
                raise LockHeldError(message + "; try again when it finishes")
            if not announced and on_wait:
                on_wait(message + "; waiting for it to finish")
                announced = True
            time.sleep(poll)
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            fd = self._fd
            if fd is None:
                return
            try:
                os.utime(fd)
            except OSError:
                return

    def release(self) -> None:
        self._stop.set()
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.unlink(self.path)  # still ours: nobody else can hold it while we do
        except FileNotFoundError:
            pass
        finally:
            os.close(fd)  # closing drops the lock

    def __enter__(self) -> "ExperimentLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
