import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from open_lth_concave.foundations.lock import ExperimentLock, LockHeldError

from conftest import REPO, wait_for_lock


def test_second_holder_is_refused_then_admitted(tmp_path):
    first = ExperimentLock(tmp_path).acquire()
    with pytest.raises(LockHeldError, match=f"pid {os.getpid()}"):
        ExperimentLock(tmp_path).acquire(wait=False)
    first.release()
    ExperimentLock(tmp_path).acquire(wait=False).release()


@pytest.mark.subprocess
def test_lock_of_a_dead_process_is_stale(tmp_path):
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(proc.stdout)
    import json, socket
    (tmp_path / ".lock").write_text(json.dumps({"pid": dead_pid, "host": socket.gethostname(), "since": 0}))
    ExperimentLock(tmp_path).acquire(wait=False).release()


def test_old_heartbeat_from_another_host_is_stale(tmp_path):
    import json
    (tmp_path / ".lock").write_text(json.dumps({"pid": 1, "host": "elsewhere", "since": 0}))
    with pytest.raises(LockHeldError, match="elsewhere"):
        ExperimentLock(tmp_path, stale_after=60).acquire(wait=False)
    old = time.time() - 600
    os.utime(tmp_path / ".lock", (old, old))
    ExperimentLock(tmp_path, stale_after=60).acquire(wait=False).release()


@pytest.mark.subprocess
@pytest.mark.slow
def test_two_processes_on_one_experiment_train_it_once(tmp_path):
    """Start two real `lottery` processes on the same experiment: one trains, the other waits and reuses."""
    env = dict(os.environ, OPEN_LTH_ROOT=str(tmp_path))
    cmd = [sys.executable, "-m", "open_lth_concave", "lottery", "--default_hparams=digits_lenet_300_100",
           "--levels=1", "--training_steps=3ep"]
    where = subprocess.run(cmd + ["--display_output_location"], capture_output=True, text=True, env=env, cwd=REPO)
    replicate = Path(where.stdout.strip().splitlines()[-1])
    # The first holds the lock and is paused there, so the second surely meets it (on a busy machine the
    # second's start-up can otherwise outlast the whole first run).
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    assert wait_for_lock(replicate, first)
    os.kill(first.pid, signal.SIGSTOP)
    second = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO)
    seen = []
    reader = threading.Thread(target=lambda: seen.extend(second.stdout), daemon=True)
    reader.start()
    deadline = time.time() + 120
    while time.time() < deadline and second.poll() is None and not any("waiting for it to finish" in l for l in seen):
        time.sleep(0.05)
    os.kill(first.pid, signal.SIGCONT)
    procs = [first, second]
    outs = [first.communicate(timeout=240)]
    second.wait(timeout=240)
    reader.join(timeout=10)
    outs.append(("".join(seen), ""))
    assert [p.returncode for p in procs] == [0, 0], outs
    trained = [o for o, _ in outs if "level 1\tep 001" in o]
    waited = [o for o, _ in outs if "waiting for it to finish" in o]
    assert len(trained) == 1 and len(waited) == 1
    assert all("Level 1: remaining weights" in o for o, _ in outs)
    # both report the same accuracy (the waiter reads the trainer's results)
    lines = [[l for l in o.splitlines() if l.startswith("Level 1:")][0] for o, _ in outs]
    assert lines[0] == lines[1]


def _race_for(folder, start, attempted, results):
    """One racer: wait for the start, try once, hold what it got until every racer has tried."""
    start.wait()
    lock = ExperimentLock(folder)
    try:
        lock.acquire(wait=False)
        got = True
    except LockHeldError:
        got = False
    attempted.wait()
    lock.release()
    results.put(got)


@pytest.mark.subprocess
@pytest.mark.slow
def test_processes_racing_for_a_dead_holders_lock_get_exactly_one_holder(tmp_path):
    """Many times over: a lock left by a dead process, several processes released at the same moment to
    take it over. The OS grants it to exactly one (the old take-over by unlink + create let two in)."""
    import json
    import multiprocessing
    import socket
    ctx = multiprocessing.get_context("fork")
    dead_pid = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                                  capture_output=True, text=True).stdout)
    racers, trials = 6, 40
    winners = []
    for trial in range(trials):
        folder = tmp_path / f"trial_{trial}"
        folder.mkdir()
        (folder / ".lock").write_text(json.dumps({"pid": dead_pid, "host": socket.gethostname(), "since": 0}))
        start, attempted, results = ctx.Barrier(racers), ctx.Barrier(racers), ctx.Queue()
        procs = [ctx.Process(target=_race_for, args=(folder, start, attempted, results)) for _ in range(racers)]
        for p in procs:
            p.start()
        got = [results.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=60)
        assert all(p.exitcode == 0 for p in procs)
        winners.append(sum(got))
        assert not (folder / ".lock").exists()      # the winner removed it on release
    assert winners == [1] * trials


@pytest.mark.subprocess
def test_a_stopped_holder_keeps_the_lock(tmp_path):
    """A holder paused by SIGSTOP (its heartbeat stops too) still holds the lock: the OS sees it alive."""
    import signal
    code = ("import sys, time; from open_lth_concave.foundations.lock import ExperimentLock; "
            f"ExperimentLock({str(tmp_path)!r}, heartbeat=0.05).acquire(); print('held', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert proc.stdout.readline().strip() == "held"
        proc.send_signal(signal.SIGSTOP)
        old = time.time() - 3600
        os.utime(tmp_path / ".lock", (old, old))       # as if its heartbeat had stopped long ago
        with pytest.raises(LockHeldError, match=f"pid {proc.pid}"):
            ExperimentLock(tmp_path, stale_after=1).acquire(wait=False)
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.kill()
        proc.wait()
    ExperimentLock(tmp_path).acquire(wait=False).release()   # a killed holder's lock is free at once


def test_a_lock_path_that_is_a_link_is_refused_and_its_target_left_alone(tmp_path):
    """A `.lock` that is a symbolic link (planted, or copied with a results folder) must not be opened for
    writing: the holder record would replace the content of whatever it points to."""
    from open_lth_concave.foundations.errors import UserError
    precious = tmp_path / "precious.json"
    precious.write_text('{"keep": true}')
    folder = tmp_path / "exp"
    folder.mkdir()
    (folder / ".lock").symlink_to(precious)
    with pytest.raises(UserError, match=r"\.lock is a symbolic link"):
        ExperimentLock(folder).acquire(wait=False)
    assert precious.read_text() == '{"keep": true}'
    (folder / ".lock").unlink()
    os.mkfifo(folder / ".lock")                     # nor anything else that is not a regular file
    with pytest.raises(UserError, match="not a regular file"):
        ExperimentLock(folder).acquire(wait=False)


def test_an_empty_root_variable_means_the_default_not_the_current_folder(monkeypatch, tmp_path):
    from open_lth_concave.foundations import paths
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("OPEN_LTH_ROOT", "")
    monkeypatch.setenv("OPEN_LTH_DATASETS", "")
    assert paths.results_root() == tmp_path / "open_lth_data"
    assert paths.datasets_root() == tmp_path / "open_lth_datasets"
