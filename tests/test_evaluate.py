import json
import shutil

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from fakedetect.cli.main import main

from .conftest import write_bad_files

PLOTS = ["confusion_matrix.png", "roc_curve.png", "pr_curve.png", "reliability.png", "score_histogram.png",
         "training_curves.png"]


def test_run_card_records_its_validation(tiny_run):
    card = json.loads((tiny_run / "model.json").read_text())
    assert card["val_metrics"]["n"] == 6  # 25% of 12 per class
    assert card["data"]["val"] == {"real": 3, "fake": 3} and card["epochs_run"] == {"frozen": 1, "finetune": 1}


def test_evaluate_writes_everything_and_counts_add_up(calibrated_run, tiny_data, tmp_path):
    data = tmp_path / "test"
    shutil.copytree(tiny_data, data)
    write_bad_files(data / "real")
    out = tmp_path / "eval"
    res = CliRunner().invoke(main, ["evaluate", str(calibrated_run), "--data", str(data), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "balanced_accuracy" in res.output and "report.html" in res.output
    m = json.loads((out / "metrics.json").read_text())
    for key in ("loss", "accuracy", "balanced_accuracy", "precision", "recall", "f1", "specificity", "roc_auc",
                "average_precision", "eer", "accuracy_real", "accuracy_fake", "threshold", "n_real", "n_fake",
                "ece", "model", "data"):
        assert key in m, key
    assert m["skipped"] == 4
    assert sum(m["confusion_matrix"].values()) == m["n"] == 24
    assert m["n_real"] == 12 and m["n_fake"] == 12
    pred = pd.read_csv(out / "predictions.csv")
    assert list(pred.columns) == ["path", "label", "prob_fake", "prob_real", "predicted", "in_domain",
                                  "domain_distance"]
    assert len(pred) == 24
    assert ((pred.prob_fake + pred.prob_real - 1).abs() < 1e-9).all()
    assert ((pred.prob_fake >= m["threshold"]).astype(int) == pred.predicted).all()
    # The run's threshold (0.4) and temperature (2.5), not the defaults; metrics at 0.5 beside them.
    assert m["threshold"] == 0.4 and m["at_0.5"]["threshold"] == 0.5 and m["temperature"] == 2.5
    cm, cm5 = m["confusion_matrix"], m["at_0.5"]["confusion_matrix"]
    assert cm["tp"] + cm["fp"] == int(pred.predicted.sum())
    assert cm5["tp"] + cm5["fp"] == int((pred.prob_fake >= 0.5).sum())
    for name in [*PLOTS, "report.html"]:
        assert (out / name).stat().st_size > 1000, name
    assert "real" in (out / "classification_report.txt").read_text()
    assert set(json.loads((out / "classification_report.json").read_text())) >= {"real", "fake", "accuracy"}
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= len(PLOTS)
    assert "Most confident mistakes" in page and "http://" not in page and "https://" not in page
    assert str(tiny_data.resolve()) not in page and f"<td style='text-align:left'>{tiny_data.name}</td>" in page
    again = CliRunner().invoke(main, ["evaluate", str(calibrated_run), "--data", str(data), "--out", str(out)])
    assert again.exit_code == 1 and "already exists" in again.output


def test_evaluate_with_one_class_only(tiny_run, tiny_data, tmp_path):
    data = tmp_path / "onlyfake"
    shutil.copytree(tiny_data / "fake", data / "fake")
    out = tmp_path / "eval"
    res = CliRunner().invoke(main, ["evaluate", str(tiny_run), "--data", str(data), "--out", str(out)])
    assert res.exit_code == 0, res.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["roc_auc"] is None and m["n_real"] == 0 and m["n_fake"] == 12
    assert "undefined" in res.output


def test_evaluate_run_without_model_is_a_clear_error(tmp_path, tiny_data):
    (tmp_path / "run").mkdir()
    res = CliRunner().invoke(main, ["evaluate", str(tmp_path / "run"), "--data", str(tiny_data)])
    assert res.exit_code == 1 and "holds no trained model" in res.output and "Traceback" not in res.output


def test_robustness_table_and_plot(tiny_run, tiny_data, tmp_path):
    out = tmp_path / "rob"
    res = CliRunner().invoke(main, ["robustness", str(tiny_run), "--data", str(tiny_data), "--out", str(out)])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out / "robustness.csv")
    expected = {"clean", "reencode_both_jpeg90", "jpeg_q95", "jpeg_q75", "jpeg_q50", "jpeg_q30", "blur_sigma1",
                "blur_sigma2", "downscale_0.5", "downscale_0.25"}
    assert set(table.perturbation) == expected
    assert table.roc_auc.between(0, 1).all() and (table.n == 24).all()
    assert (out / "robustness.png").stat().st_size > 1000
    assert json.loads((out / "robustness.json").read_text())["results"][0]["perturbation"] == "clean"
    # Each perturbation really reached the pixels the model scored: no row is scored exactly like the clean one.
    t = table.set_index("perturbation")
    cols = ["roc_auc", "accuracy", "eer", "ece"]
    same = [n for n in t.index if n != "clean" and np.allclose(t.loc[n, cols].astype(float),
                                                               t.loc["clean", cols].astype(float), rtol=0, atol=1e-12)]
    assert same == [], f"scored exactly like the clean images: {same}"


def test_perturbations_change_pixels_and_keep_shape():
    import numpy as np
    import tensorflow as tf

    from fakedetect.data.transforms import perturbations

    img = tf.constant(np.random.default_rng(0).integers(0, 256, (40, 30, 3)), tf.uint8)
    for name, fn in perturbations().items():
        if fn is None:
            continue
        out = fn(img).numpy()
        assert out.shape == (40, 30, 3) and out.dtype == np.uint8, name
        assert np.abs(out.astype(int) - img.numpy()).mean() > 1, name


def test_split_command(tiny_data, tmp_path):
    out = tmp_path / "split"
    res = CliRunner().invoke(main, ["split", str(tiny_data), "--out", str(out), "--test-fraction", "0.25"])
    assert res.exit_code == 0, res.output
    test_files = {p.name for p in (out / "test").rglob("*") if p.is_file()}
    train_files = {p.name for p in (out / "train").rglob("*") if p.is_file()}
    assert len(test_files) == 6 and len(train_files) == 18 and not test_files & train_files
    assert {c: len(list((out / "test" / c).iterdir())) for c in ("real", "fake")} == {"real": 3, "fake": 3}
    again = CliRunner().invoke(main, ["split", str(tiny_data), "--out", str(out)])
    assert again.exit_code == 1 and "already exists" in again.output


@pytest.mark.parametrize("bad", ["--test-fraction=1.5"])
def test_split_bad_fraction(tiny_data, tmp_path, bad):
    res = CliRunner().invoke(main, ["split", str(tiny_data), "--out", str(tmp_path / "x"), bad])
    assert res.exit_code == 2 and "--test-fraction" in res.output
