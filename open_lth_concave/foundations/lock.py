"""One process per experiment replicate: a lock file holding the holder's pid and host.

Two `lottery` (or `compare`) processes pointed at the same experiment must not both train it: the
second waits for the first (or, with `wait=False`, reports who holds it). A lock is stale, and is
taken over, when its holder is a dead process on this host, or when its heartbeat (the file's
modification time, refreshed every few seconds by a background thread) is older than `stale_after`.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Optional

from open_lth_concave.foundations.errors import UserError


class LockHeldError(UserError, RuntimeError):
    """Another live process holds the experiment."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ExperimentLock:
    def __init__(self, folder: Path, heartbeat: float = 5.0, stale_after: float = 120.0):
        self.path = Path(folder) / ".lock"
        self.heartbeat = heartbeat
        self.stale_after = stale_after
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def holder(self) -> Optional[dict]:
        try:
            return json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return None

    def _stale(self) -> bool:
        info = self.holder()
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return False
        if info is None:
            return age > 5.0  # a half-written lock left by a killed process
        if info.get("host") == socket.gethostname() and not _pid_alive(int(info.get("pid", -1))):
            return True
        return age > self.stale_after

    def _try_acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if self._stale():
                try:
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass
                return self._try_acquire()
            return False
        with os.fdopen(fd, "w") as f:
            json.dump({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}, f)
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
        self._thread = threading.Thread(target=self._beat, daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            try:
                os.utime(self.path)
            except FileNotFoundError:
                return

    def release(self) -> None:
        self._stop.set()
        info = self.holder()
        if info and info.get("pid") == os.getpid():
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    def __enter__(self) -> "ExperimentLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
