"""tf.distribute without GPUs: two logical CPU devices, and two worker processes on loopback running the same
custom training loop as every other run."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pandas as pd
import pytest

from fakedetect.errors import StrategyError
from fakedetect.training.cluster import is_chief, workers_tf_config

TINY = ["--backbone", "efficientnet-lite0", "--image-size", "48", "--epochs-frozen", "1", "--epochs-finetune", "1",
        "--batch-size", "4", "--val-fraction", "0.25"]
# What makes one process and two workers compute the same thing: no dropout (head or backbone) and no augmentation
# (their random draws differ per replica), images streamed rather than cached features, learning rates not scaled.
SAME_MATH = """dropout: 0.0
stochastic_depth: false
cache_features: false
scale_lr: false
augment: {flip: false, rotation: 0.0, zoom: 0.0, contrast: 0.0, jpeg_prob: 0.0, blur_prob: 0.0}
# Cosine schedule and a moving average of the weights, so that they too are checked across workers.
schedule: cosine
ema_decay: 0.5
"""


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _train(args, env=None, **kw):
    return subprocess.Popen([sys.executable, "-m", "fakedetect", "train", *map(str, args)],
                            env=dict(os.environ, **(env or {})), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, **kw)


def _workers(n, args, tmpdir):
    cluster = ",".join(f"127.0.0.1:{p}" for p in _free_ports(n))
    return [_train([*args, "--workers", cluster, "--task-index", i], env={"TMPDIR": str(tmpdir)})
            for i in range(n)]


def test_is_chief(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert is_chief()
    cluster = {"worker": ["a:1", "b:2"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}}))
    assert is_chief()
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 1}}))
    assert not is_chief()


def test_workers_option_builds_tf_config():
    cfg = json.loads(workers_tf_config(["10.0.0.1:2222", "10.0.0.2:2222"], 1))
    assert cfg == {"cluster": {"worker": ["10.0.0.1:2222", "10.0.0.2:2222"]}, "task": {"type": "worker", "index": 1}}
    for workers, index, message in ((["a:1"], 0, "at least two"), (["a:1", "b"], 0, "not host:port"),
                                    (["a:1", "b:2"], 2, "not in 0..1")):
        with pytest.raises(StrategyError, match=message):
            workers_tf_config(workers, index)


def test_mirrored_over_two_logical_cpus(tiny_data, tmp_path):
    run = tmp_path / "run"
    proc = _train(["--data", tiny_data, "--out", run, "--strategy", "mirrored", "--devices", "/cpu:0,/cpu:1", *TINY,
                   "--ema-decay", "0.5"],
                  env={"FAKEDETECT_LOGICAL_CPUS": "2"})
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, out
    assert "MirroredStrategy: 2 replica(s) on 1 machine(s), global batch 8" in out
    assert out.count("[finetune] epoch 2:") == 1  # each message once (no second copy through the root logger)
    card = json.loads((run / "model.json").read_text())
    assert card["strategy"]["replicas"] == 2 and card["strategy"]["global_batch_size"] == 8
    assert pd.read_csv(run / "history.csv")["val_loss_ema"].notna().all()  # the average, kept across replicas


def test_train_batchnorm_is_refused_with_several_replicas(tiny_data, tmp_path):
    proc = _train(["--data", tiny_data, "--out", tmp_path / "run", "--strategy", "mirrored", "--devices",
                   "/cpu:0,/cpu:1", *TINY, "--train-batchnorm"], env={"FAKEDETECT_LOGICAL_CPUS": "2"})
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode != 0 and "train_batchnorm with 2 replicas" in out, out
    assert "Traceback" not in out and not (tmp_path / "run").exists()


def test_two_workers_on_loopback_match_one_process(tiny_data, tmp_path):
    """Two worker processes (2 x batch 4) train exactly what one process (batch 8) trains: the global batches hold
    the same images (the stream is shuffled with one seed, then sharded by file), the gradients are summed."""
    (tmp_path / "same.yaml").write_text(SAME_MATH)
    common = ["--data", tiny_data, "--config", tmp_path / "same.yaml", *TINY, "--image-size", "32"]
    workers_tmp = tmp_path / "tmp"
    workers_tmp.mkdir()
    procs = _workers(2, [*common, "--out", tmp_path / "multi"], workers_tmp)
    outs = [p.communicate(timeout=300)[0] for p in procs]
    for p, o in zip(procs, outs, strict=True):
        assert p.returncode == 0, o[-3000:]
    assert "CollectiveAllReduceStrategy: 2 replica(s) on 2 machine(s), global batch 8" in outs[0]
    assert "worker 1: temporary copy" in outs[1]
    sums = [next(ln for ln in o.splitlines() if "final weights checksum" in ln).split()[3] for o in outs]
    assert sums[0] == sums[1]  # the two workers end with identical weights
    for name in ("model.keras", "model.json", "history.csv", "config.yaml", "training_curves.png", "skipped.txt"):
        assert (tmp_path / "multi" / name).is_file(), name
    assert list(workers_tmp.iterdir()) == []  # the worker removed its temporary folder
    card = json.loads((tmp_path / "multi" / "model.json").read_text())
    assert card["strategy"]["workers"] == 2 and card["strategy"]["replicas"] == 2

    single = _train([*common, "--batch-size", "8", "--out", tmp_path / "single"])
    out = single.communicate(timeout=300)[0]
    assert single.returncode == 0, out
    multi, one = pd.read_csv(tmp_path / "multi" / "history.csv"), pd.read_csv(tmp_path / "single" / "history.csv")
    assert list(multi.phase) == list(one.phase) == ["frozen", "finetune"]
    # Stated tolerance: float32 sums in another order (per worker, then all-reduced) differ by ~1e-6 relative.
    for col in ("loss", "val_loss", "val_accuracy", "val_loss_raw", "val_loss_ema", "learning_rate"):
        assert multi[col].to_numpy() == pytest.approx(one[col].to_numpy(), rel=1e-4, abs=1e-5), col


def test_an_unreachable_worker_is_a_clear_error_not_a_hang(tiny_data, tmp_path):
    t0 = time.time()
    cluster = ",".join(f"127.0.0.1:{p}" for p in _free_ports(2))
    proc = _train(["--data", tiny_data, "--out", tmp_path / "run", *TINY, "--workers", cluster, "--task-index", "0"],
                  env={"FAKEDETECT_CLUSTER_TIMEOUT_S": "5"})
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode != 0 and time.time() - t0 < 100
    assert f"waited 5 s for the other worker(s) to join: {cluster.split(',')[1]} (task 1)" in out


@pytest.mark.slow
def test_kill_one_worker_mid_epoch_then_restart_both(tmp_path):
    """MultiWorkerMirroredStrategy is not elastic: when a worker dies, all restart, from the last checkpoint."""
    from fakedetect.data.synthetic import make_synthetic_dataset

    data = make_synthetic_dataset(tmp_path / "data", n_per_class=120, size=64)
    run = tmp_path / "run"
    args = ["--data", data, "--out", run, "--backbone", "efficientnet-lite0", "--image-size", "64",
            "--epochs-frozen", "1", "--epochs-finetune", "4", "--batch-size", "4", "--seed", "3"]
    procs = _workers(2, args, tmp_path)
    deadline = time.time() + 400
    while time.time() < deadline and all(p.poll() is None for p in procs):
        if (run / "history.csv").is_file() and len(pd.read_csv(run / "history.csv")) >= 2:
            break
        time.sleep(0.5)
    assert all(p.poll() is None for p in procs), procs[0].communicate()[0][-3000:]
    time.sleep(2)  # inside epoch 3
    procs[1].send_signal(signal.SIGKILL)
    procs[1].wait()
    try:  # the chief fails (its peer is gone) or is stopped, as a job scheduler would
        procs[0].wait(timeout=120)
    except subprocess.TimeoutExpired:
        procs[0].kill()
        procs[0].wait()
    done = len(pd.read_csv(run / "history.csv"))
    assert 2 <= done < 5 and not (run / "model.json").exists()

    cluster = ",".join(f"127.0.0.1:{p}" for p in _free_ports(2))
    again = [_train(["--resume", run, "--workers", cluster, "--task-index", i]) for i in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in again]
    for p, o in zip(again, outs, strict=True):
        assert p.returncode == 0, o[-3000:]
    assert f"resuming after epoch {done}" in outs[0]
    hist = pd.read_csv(run / "history.csv")
    assert list(hist["epoch"]) == list(range(1, len(hist) + 1))  # no epoch lost, none repeated
    assert list(hist["phase"]) == ["frozen"] + ["finetune"] * (len(hist) - 1)
    assert (run / "model.json").is_file()
    sums = [next(ln for ln in o.splitlines() if "final weights checksum" in ln).split()[3] for o in outs]
    assert sums[0] == sums[1]
