"""The multi-worker port: where TensorFlow binds it, and the warning that says so."""
import json
import logging
import socket

import pytest
import tensorflow as tf

from keras_crf_reid.training import distribute

TF_CONFIG = json.dumps({"cluster": {"worker": ["127.0.0.1:23456", "10.0.0.2:2222"]},
                        "task": {"type": "worker", "index": 0}})


def listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as in /proc/net/tcp*) of sockets listening on port."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            local, state = row.split()[1], row.split()[3]
            address, _, hex_port = local.rpartition(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


def test_tensorflow_worker_server_binds_every_interface():
    """Pins what docs/distributed.md states: TF ignores the host of the task's address.

    If TensorFlow ever binds the named host only, this fails: update the doc and the warning.
    """
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    cluster = tf.train.ClusterSpec({"worker": [f"127.0.0.1:{port}"]})
    server = tf.distribute.Server(cluster, job_name="worker", task_index=0, protocol="grpc", start=True)
    assert server.target == f"grpc://127.0.0.1:{port}"
    addresses = listening_addresses(port)
    assert addresses, f"nothing listens on port {port}"
    loopback = {"0100007F", "0000000000000000FFFF00000100007F", "00000000000000000000000001000000"}
    assert not addresses & loopback
    assert addresses <= {"00000000", "00000000000000000000000000000000"}   # 0.0.0.0 / ::


def test_task_address_and_warning():
    assert distribute.task_address(TF_CONFIG) == ("127.0.0.1", 23456)
    chief = json.dumps({"cluster": {"chief": ["[::1]:2000"], "worker": ["h:1"]},
                        "task": {"type": "chief", "index": 0}})
    assert distribute.task_address(chief) == ("::1", 2000)
    message = distribute.exposure_warning(TF_CONFIG)
    assert "port 23456 of every network interface" in message and "127.0.0.1" in message
    assert "firewall" in message
    for bad in ("not json", json.dumps({"cluster": {}}), json.dumps({"cluster": {"worker": ["a:1"]},
                                                                   "task": {"type": "worker", "index": 3}})):
        with pytest.raises(ValueError, match="TF_CONFIG does not name this task"):
            distribute.task_address(bad)


def test_make_strategy_default_and_warning_logged(monkeypatch, caplog):
    assert distribute.make_strategy("default") is tf.distribute.get_strategy()
    created = []
    monkeypatch.setattr(tf.distribute, "MultiWorkerMirroredStrategy", lambda: created.append(1) or "mw")
    monkeypatch.setenv("TF_CONFIG", TF_CONFIG)
    with caplog.at_level(logging.WARNING, logger=distribute.log.name):
        assert distribute.make_strategy("multi_worker") == "mw"
    assert created == [1]
    assert any("port 23456 of every network interface" in r.getMessage() for r in caplog.records)
