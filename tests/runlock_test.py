"""One run per run folder: a second one is refused naming the holder, stale locks are taken over."""
import os
import select
import socket
import subprocess
import sys
import threading
import time

import pytest

from keras_crf_reid import runlock
from keras_crf_reid.runner import experiment
from tests.runner_test import tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def other_process():
    """A live process that is not this one."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def test_second_run_in_the_same_folder_is_refused_naming_the_holder(tmp_path, other_process):
    cfg = tiny_config(tmp_path, name="locked")
    os.makedirs(cfg.run_dir)
    with open(os.path.join(cfg.run_dir, runlock.LOCK_FILE), "w") as f:
        f.write(f"{other_process.pid} {socket.gethostname()}\n")
    with pytest.raises(runlock.RunLockedError, match=f"in use by process {other_process.pid} "):
        experiment.run(cfg)
    assert not os.path.exists(os.path.join(cfg.run_dir, "settings.json"))   # refused before any work


def test_lock_is_exclusive_and_released(tmp_path):
    with runlock.run_lock(str(tmp_path)) as path:
        assert open(path).read().split()[0] == str(os.getpid())
        with pytest.raises(runlock.RunLockedError, match=str(os.getpid())):
            runlock.acquire(str(tmp_path))
    assert not os.path.exists(path)


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path = os.path.join(str(tmp_path), runlock.LOCK_FILE)
    with open(path, "w") as f:
        f.write(f"{dead.pid} {socket.gethostname()}\n")
    with runlock.run_lock(str(tmp_path)):
        assert open(path).read().split()[0] == str(os.getpid())


def test_lock_of_another_host_is_never_taken_over(tmp_path):
    path = os.path.join(str(tmp_path), runlock.LOCK_FILE)
    with open(path, "w") as f:
        f.write("1234 some-other-host\n")
    with pytest.raises(runlock.RunLockedError, match="1234 on some-other-host"):
        runlock.acquire(str(tmp_path))


def test_release_leaves_another_process_lock_alone(tmp_path, other_process):
    path = os.path.join(str(tmp_path), runlock.LOCK_FILE)
    with open(path, "w") as f:                   # our lock was taken over, e.g. after a stale wait
        f.write(f"{other_process.pid} {socket.gethostname()}\n")
    runlock.release(path)
    assert open(path).read().split()[0] == str(other_process.pid)


def test_half_written_lock_is_not_taken_over_at_once(tmp_path, other_process):
    path = os.path.join(str(tmp_path), runlock.LOCK_FILE)
    open(path, "w").close()                      # created (O_EXCL) but its holder not written yet

    def finish_writing():
        time.sleep(0.5)
        with open(path, "w") as f:
            f.write(f"{other_process.pid} {socket.gethostname()}\n")

    writer = threading.Thread(target=finish_writing)
    writer.start()
    try:
        with pytest.raises(runlock.RunLockedError, match=f"in use by process {other_process.pid} "):
            runlock.acquire(str(tmp_path))
    finally:
        writer.join()


def test_half_written_lock_of_a_writer_killed_long_ago_is_taken_over(tmp_path):
    path = os.path.join(str(tmp_path), runlock.LOCK_FILE)
    open(path, "w").close()
    os.utime(path, (time.time() - 60, time.time() - 60))
    with runlock.run_lock(str(tmp_path)):
        assert open(path).read().split()[0] == str(os.getpid())


def test_folders_a_failed_start_created_are_removed(tmp_path, monkeypatch):
    run_dir = tmp_path / "runs" / "exp" / "seed0"
    with pytest.raises(ValueError, match="bad flag"):
        with runlock.run_lock(str(run_dir)):
            assert run_dir.is_dir()
            raise ValueError("bad flag")         # the run fails before writing anything
    assert os.listdir(tmp_path) == []
    kept = tmp_path / "runs" / "kept"
    with runlock.run_lock(str(kept)):
        (kept / "settings.json").write_text("{}")   # a run that wrote something keeps its folder
    assert os.listdir(kept) == ["settings.json"]

    def no_lock_file(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(runlock.os, "open", no_lock_file)
    with pytest.raises(PermissionError):        # the lock itself cannot be taken
        with runlock.run_lock(str(run_dir)):
            pass
    assert os.listdir(tmp_path / "runs") == ["kept"]


_RACER = """
import os, sys, time
from keras_crf_reid import runlock
folder, go, done = sys.argv[1:]
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.001)
try:
    path = runlock.acquire(folder)
except runlock.RunLockedError:
    print("refused", flush=True)
else:
    print("won", flush=True)
    while not os.path.exists(done):
        time.sleep(0.01)
    runlock.release(path)
"""


@pytest.mark.parametrize("left_behind", ["nothing", "stale lock"])
def test_processes_racing_for_one_lock_one_wins(tmp_path, left_behind):
    go, done = str(tmp_path / "go"), str(tmp_path / "done")
    if left_behind == "stale lock":                 # every racer sees it stale and takes it over
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        os.makedirs(tmp_path / "run")
        (tmp_path / "run" / runlock.LOCK_FILE).write_text(f"{dead.pid} {socket.gethostname()}\n")
    racers = [subprocess.Popen([sys.executable, "-c", _RACER, str(tmp_path / "run"), go, done],
                               stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": REPO})
              for _ in range(4)]
    try:
        assert [p.stdout.readline().strip() for p in racers] == ["ready"] * 4
        open(go, "w").close()                    # all released at once
        outcomes = sorted(p.stdout.readline().strip() for p in racers)
    finally:
        open(done, "w").close()
        for p in racers:
            p.communicate(timeout=60)
    assert outcomes == ["refused", "refused", "refused", "won"]


def test_stale_lock_is_taken_over_by_one_of_two_processes_finding_it_stale(tmp_path, monkeypatch):
    """Another process takes the stale lock over between this one's reading it and removing it."""
    folder = tmp_path / "run"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    os.makedirs(folder)
    (folder / runlock.LOCK_FILE).write_text(f"{dead.pid} {socket.gethostname()}\n")
    go, done = str(tmp_path / "go"), str(tmp_path / "done")
    other = subprocess.Popen([sys.executable, "-c", _RACER, str(folder), go, done],
                             stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": REPO})
    assert other.stdout.readline().strip() == "ready"
    read_holder, seen = runlock._holder, []

    def holder_then_the_other_races(path):
        holder = read_holder(path)
        if not seen:                             # the other process acts right after this read
            open(go, "w").close()
            ready, _, _ = select.select([other.stdout], [], [], 3.0)
            seen.append(other.stdout.readline().strip() if ready else "blocked")
        return holder

    monkeypatch.setattr(runlock, "_holder", holder_then_the_other_races)
    try:
        try:
            path = runlock.acquire(str(folder))
            mine = "won"
        except runlock.RunLockedError:
            mine = "refused"
        monkeypatch.setattr(runlock, "_holder", read_holder)
        if seen[0] == "blocked":                 # it waited for this one's takeover to finish
            seen[0] = other.stdout.readline().strip()
        assert sorted([mine, seen[0]]) == ["refused", "won"]
        if mine == "won":
            runlock.release(path)
    finally:
        open(done, "w").close()
        other.communicate(timeout=60)
