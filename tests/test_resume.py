"""A real training process killed with SIGKILL mid-epoch, then resumed."""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from click.testing import CliRunner

from fakedetect.cli.main import main


@pytest.fixture(scope="module")
def bigger_data(tmp_path_factory):
    from fakedetect.data.synthetic import make_synthetic_dataset

    return make_synthetic_dataset(tmp_path_factory.mktemp("resume") / "data", n_per_class=120, size=64)


def _rows(run):
    try:
        return len(pd.read_csv(run / "history.csv"))
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return 0


def test_sigkill_mid_epoch_then_resume(bigger_data, tmp_path):
    run = tmp_path / "run"
    args = [sys.executable, "-m", "fakedetect", "train", "--data", str(bigger_data), "--out", str(run),
            "--backbone", "efficientnet-lite0", "--image-size", "96", "--epochs-frozen", "2",
            "--epochs-finetune", "3", "--batch-size", "8", "--seed", "3"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=dict(os.environ))
    deadline = time.time() + 240
    # Frozen epochs train the head on cached features (milliseconds); kill inside the first fine-tuning epoch
    # after one has finished, i.e. inside epoch 4.
    while _rows(run) < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, proc.stdout.read().decode()
    t_epoch = float(pd.read_csv(run / "history.csv")["seconds"].iloc[-1])
    # Inside epoch 4, early: epoch 3's time includes tracing the step, so epoch 4 can be much shorter than it.
    time.sleep(min(0.2, t_epoch / 10))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _rows(run) == 3 and not (run / "model.json").exists()

    res = CliRunner().invoke(main, ["train", "--resume", str(run)])
    assert res.exit_code == 0, res.output
    assert "resuming after epoch 3" in res.output
    hist = pd.read_csv(run / "history.csv")
    assert list(hist["epoch"]) == list(range(1, len(hist) + 1))  # no epoch lost, none repeated
    assert list(hist["phase"]) == ["frozen"] * 2 + ["finetune"] * (len(hist) - 2) and len(hist) >= 4
    for name in ("model.keras", "model.json", "training_curves.png", "config.yaml"):
        assert (run / name).is_file(), name
    assert json.loads((run / "state.json").read_text())["phase"] == "done"
    again = CliRunner().invoke(main, ["train", "--resume", str(run)])
    assert again.exit_code == 1 and "already finished" in again.output


def test_resume_needs_an_interrupted_run(tmp_path):
    res = CliRunner().invoke(main, ["train", "--resume", str(tmp_path)])
    assert res.exit_code == 1 and "no interrupted run" in res.output
    res = CliRunner().invoke(main, ["train", "--resume", str(tmp_path), "--batch-size", "4"])
    assert res.exit_code == 2 and "takes no other option" in res.output
