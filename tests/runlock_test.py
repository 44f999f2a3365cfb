"""One run per run folder: a second one is refused naming the holder, stale locks are taken over."""
import os
import socket
import subprocess
import sys

import pytest

from keras_crf_reid import runlock
from keras_crf_reid.runner import experiment
from tests.runner_test import tiny_config


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
