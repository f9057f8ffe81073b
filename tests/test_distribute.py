"""tf.distribute on a machine without GPUs: two logical CPU devices, and two worker processes on loopback."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from fakedetect.distribute import is_chief

TINY = ["--backbone", "efficientnet-lite0", "--image-size", "48", "--epochs-frozen", "1", "--epochs-finetune", "1",
        "--batch-size", "4", "--val-fraction", "0.25"]


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_is_chief(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert is_chief()
    cluster = {"worker": ["a:1", "b:2"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}}))
    assert is_chief()
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 1}}))
    assert not is_chief()


def test_mirrored_over_two_logical_cpus(tiny_data, tmp_path):
    run = tmp_path / "run"
    env = dict(os.environ, FAKEDETECT_LOGICAL_CPUS="2")
    out = subprocess.run([sys.executable, "-m", "fakedetect", "train", "--data", str(tiny_data), "--out", str(run),
                          "--strategy", "mirrored", "--devices", "/cpu:0,/cpu:1", *TINY],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "MirroredStrategy: 2 replica(s), global batch 8" in out.stdout
    card = json.loads((run / "model.json").read_text())
    assert card["strategy"]["replicas"] == 2 and card["strategy"]["global_batch_size"] == 8


def test_multi_worker_is_refused_clearly_before_any_work(tiny_data, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from fakedetect.cli import main

    cluster = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}}))
    monkeypatch.delenv("FAKEDETECT_TRY_MULTI_WORKER", raising=False)
    res = CliRunner().invoke(main, ["train", "--data", str(tiny_data), "--out", str(tmp_path / "run"),
                                    "--strategy", "multi-worker", *TINY])
    assert res.exit_code == 1 and "72388" in res.output and "mirrored" in res.output
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="Keras 3 fit() under MultiWorkerMirroredStrategy: tensorflow#72388")
def test_multi_worker_two_processes_on_loopback(tiny_data, tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for i in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}),
                   FAKEDETECT_TRY_MULTI_WORKER="1")
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "fakedetect", "train", "--data", str(tiny_data), "--out", str(tmp_path / "run"),
             "--strategy", "multi-worker", *TINY], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True))
    outs = [p.communicate(timeout=400)[0] for p in procs]
    for p, o in zip(procs, outs, strict=True):
        assert p.returncode == 0, o[-3000:]
    assert "(worker: temporary copy)" in outs[1]
    card = json.loads((tmp_path / "run" / "model.json").read_text())
    assert card["strategy"]["replicas"] == 2

    from fakedetect.model import load_model

    model = load_model(tmp_path / "run" / "model.keras")
    p = model.predict(np.zeros((1, 48, 48, 3), "float32"), verbose=0)
    assert 0 <= float(p[0, 0]) <= 1
