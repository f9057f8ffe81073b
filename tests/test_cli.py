import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from fakedetect.cli.main import main

from .conftest import write_bad_files


def test_help_is_fast_and_imports_no_tensorflow():
    code = "import sys; from fakedetect.cli import main; assert 'tensorflow' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    out = subprocess.run([sys.executable, "-m", "fakedetect", "--help"], capture_output=True, text=True, check=True)
    assert "train" in out.stdout and "inspect" in out.stdout


def test_inspect_reports_counts_duplicates_and_bad_files(tiny_data, tmp_path):
    data = tmp_path / "d"
    shutil.copytree(tiny_data, data)
    shutil.copy(next((data / "fake").glob("*.png")), data / "fake" / "copy of a fake.png")
    write_bad_files(data / "real")
    res = CliRunner().invoke(main, ["inspect", str(data), "--json", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["counts"] == {"all": {"real": 12, "fake": 13}}
    assert report["duplicates"]["groups"] == 1
    assert len(report["unreadable"]) == 4
    assert (tmp_path / "class_distribution.png").stat().st_size > 1000
    assert "real" in res.output and "48.0" in res.output  # 12 of 25 images


TINY = ["--backbone", "efficientnet-lite0", "--image-size", "48", "--epochs-frozen", "1",
        "--epochs-finetune", "1", "--batch-size", "8", "--val-fraction", "0.25"]


def test_train_end_to_end_writes_a_complete_run(tiny_data, tmp_path):
    data = tmp_path / "d"
    shutil.copytree(tiny_data, data)
    write_bad_files(data / "fake")
    run = tmp_path / "run"
    res = CliRunner().invoke(main, ["train", "--data", str(data), "--out", str(run), *TINY])
    assert res.exit_code == 0, res.output
    assert "phase 1" in res.output and "phase 2" in res.output and "epoch 2" in res.output
    assert "mean little" in res.output and "calibration skipped" in res.output  # 3 validation images per class
    assert "features computed once" in res.output  # the counterpart of test_train_without_feature_cache
    for name in ("config.yaml", "history.csv", "model.keras", "model.json", "training_curves.png", "skipped.txt"):
        assert (run / name).is_file(), name
    assert any((run / "logs").rglob("*tfevents*"))
    hist = pd.read_csv(run / "history.csv")
    assert list(hist["phase"]) == ["frozen", "finetune"]
    assert {"loss", "val_loss", "val_accuracy", "learning_rate"} <= set(hist.columns)
    card = json.loads((run / "model.json").read_text())
    assert card["class_names"] == ["real", "fake"] and card["image_size"] == 48
    assert card["backbone"] == "efficientnet-lite0" and card["threshold"] == 0.5
    assert card["data"]["train"] == {"real": 9, "fake": 9} and card["data"]["skipped"] == 4
    assert len((run / "skipped.txt").read_text().splitlines()) == 4
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["image_size"] == 48 and cfg["batch_size"] == 8

    from fakedetect.models.classifier import load_model

    model = load_model(run / "model.keras")  # safe_mode=True
    x = np.random.default_rng(0).uniform(0, 255, (3, 48, 48, 3)).astype("float32")
    p = model.predict(x, verbose=0)
    assert p.shape == (3, 1) and np.all((p >= 0) & (p <= 1))

    # The run is not overwritten unless asked.
    again = CliRunner().invoke(main, ["train", "--data", str(data), "--out", str(run), *TINY])
    assert again.exit_code == 1 and "already exists" in again.output
    assert (run / "model.keras").is_file()


@pytest.mark.parametrize("make,message", [
    (lambda d: (d / "fake").mkdir(parents=True), "missing class folder 'real/'"),
    (lambda d: ((d / "real").mkdir(parents=True), (d / "fake").mkdir()), "empty"),
])
def test_train_bad_data_fails_before_any_work(tmp_path, make, message):
    data = tmp_path / "d"
    make(data)
    run = tmp_path / "run"
    res = CliRunner().invoke(main, ["train", "--data", str(data), "--out", str(run), *TINY])
    assert res.exit_code == 1 and message in res.output
    assert not run.exists()


def test_train_bad_option_names_the_field(tiny_data, tmp_path):
    res = CliRunner().invoke(main, ["train", "--data", str(tiny_data), "--backbone", "resnet9000"])
    assert res.exit_code == 2 and "backbone" in res.output and "efficientnet-lite0" in res.output


def test_demo_runs_end_to_end_on_given_data(tiny_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["demo", "--data", str(tiny_data), "--no-serve", "--max-per-class", "10",
                                    "--out", str(tmp_path / "demo")])
    assert res.exit_code == 0, res.output
    assert "== summary" in res.output and "held-out images" in res.output
    m = json.loads((tmp_path / "demo" / "eval-test" / "metrics.json").read_text())
    card = json.loads((tmp_path / "demo" / "model.json").read_text())
    # The hold-out: 10% of 12 per class is tested, and never trained on.
    assert m["n"] == 2 and sum(card["data"]["train"].values()) + sum(card["data"]["val"].values()) == 20
    assert m["data"]["split"] == "test"
    assert m["overlap_with_training"] is not None and m["overlap_with_training"]["n"] == 0
    assert (tmp_path / "demo" / "eval-test" / "report.html").is_file()
    from fakedetect.card import ModelCard

    # The page's "Trained on" names the data given, not the cached hold-out folder it was read from.
    assert ModelCard.from_dict(card).training_domain().startswith(f"{tiny_data.name} (")


def test_demo_without_data_says_synthetic(tmp_path, monkeypatch):
    from fakedetect import demo

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FAKEDETECT_DATA", raising=False)
    monkeypatch.setenv("FAKEDETECT_CIFAKE_ARCHIVE", str(tmp_path / "absent.tar.gz"))
    monkeypatch.setenv("FAKEDETECT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FAKEDETECT_DEMO_DOWNLOAD", "0")
    found = demo.find_demo_data(None)
    assert found.synthetic and "SYNTHETIC" in (found.path / "README.txt").read_text()
    assert {p.name for p in found.path.iterdir()} >= {"real", "fake"}


def test_train_without_feature_cache(tiny_data, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("cache_features: false\n")
    run = tmp_path / "run"
    res = CliRunner().invoke(main, ["train", "--data", str(tiny_data), "--config", str(cfg), "--out", str(run),
                                    *TINY, "--epochs-finetune", "0"])
    assert res.exit_code == 0, res.output
    assert "features computed once" not in res.output
    assert len(pd.read_csv(run / "history.csv")) == 1 and (run / "model.keras").is_file()


def test_datasets_download_offline_or_missing_client_is_clear(monkeypatch):
    import sys
    import types

    fake = types.ModuleType("kagglehub")

    def no_network(handle):
        raise ConnectionError("Failed to resolve 'www.kaggle.com'")

    fake.dataset_download = no_network
    monkeypatch.setitem(sys.modules, "kagglehub", fake)
    res = CliRunner().invoke(main, ["datasets", "download", "cifake"])
    assert res.exit_code == 1 and "could not download cifake" in res.output and "--data PATH" in res.output
    monkeypatch.setitem(sys.modules, "kagglehub", None)  # not installed
    res = CliRunner().invoke(main, ["datasets", "download", "cifake"])
    assert res.exit_code == 1 and "pip install kagglehub" in res.output


def test_every_train_flag_sets_a_config_field_of_the_same_name():
    """The train command's settings are TrainConfig's fields (no second list to drift from the first)."""
    import dataclasses

    from fakedetect.config import TrainConfig

    cli_only = {"data", "resume", "config_path", "out", "overwrite", "verbose", "cluster", "task_index"}
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    flags = {p.name for p in main.commands["train"].params} - cli_only
    assert flags and flags <= fields, flags - fields
