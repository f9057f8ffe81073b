import json
import shutil

import numpy as np
import pandas as pd
from click.testing import CliRunner

from fakedetect.cli.main import main

from .conftest import write_bad_files


def test_predict_folder_with_corrupt_files(calibrated_run, tiny_data, tmp_path):
    data = tmp_path / "imgs"
    shutil.copytree(tiny_data, data)
    write_bad_files(data / "real" / "nested")
    out = tmp_path / "pred.csv"
    res = CliRunner().invoke(main, ["predict", str(calibrated_run), str(data), "--out", str(out)])
    assert res.exit_code == 0, res.output
    df = pd.read_csv(out)
    assert list(df.columns) == ["path", "prob_fake", "prob_real", "label", "in_domain", "domain_distance", "engine"]
    assert set(df["engine"]) == {"tensorflow"}
    assert len(df) == 24  # one row per readable image; the 4 bad files and README.txt reported instead
    assert res.output.count("unreadable:") == 5 and "README.txt" in res.output
    assert df.prob_fake.between(0, 1).all() and set(df.label) <= {"real", "fake"}
    assert ((df.prob_fake >= 0.4) == (df.label == "fake")).all()  # the run's threshold, not 0.5
    again = CliRunner().invoke(main, ["predict", str(calibrated_run), str(data), "--out", str(out)])
    assert again.exit_code == 1 and "already exists" in again.output

    # Same scores as evaluate's path: the predictions of a folder do not depend on the command.
    ev = tmp_path / "eval"
    res = CliRunner().invoke(main, ["evaluate", str(calibrated_run), "--data", str(data), "--out", str(ev)])
    assert res.exit_code == 0, res.output
    both = df.merge(pd.read_csv(ev / "predictions.csv"), on="path", suffixes=("", "_eval"))
    assert len(both) == 24
    np.testing.assert_allclose(both.prob_fake, both.prob_fake_eval, atol=1e-6)
    # ...and both are calibrated: the raw model output, through the run's temperature of 2.5.
    from fakedetect.metrics import apply_temperature
    from fakedetect.run import load_run, predict_raw

    run = load_run(calibrated_run)
    raw = predict_raw(run.model, list(both.path), run.image_size)
    np.testing.assert_allclose(both.prob_fake, apply_temperature(raw, 2.5), atol=1e-6)
    assert np.abs(apply_temperature(raw, 2.5) - raw).max() > 1e-3  # the temperature does change the scores


def test_predict_single_file_to_terminal_and_json(tiny_run, tiny_data, tmp_path):
    img = next((tiny_data / "fake").glob("*.png"))
    res = CliRunner().invoke(main, ["predict", str(tiny_run), str(img)])
    assert res.exit_code == 0 and img.name in res.output and "1 scored" in res.output
    out = tmp_path / "p.json"
    assert CliRunner().invoke(main, ["predict", str(tiny_run), str(img), "--out", str(out)]).exit_code == 0
    assert len(json.loads(out.read_text())["predictions"]) == 1
    res = CliRunner().invoke(main, ["predict", str(tiny_run), str(tmp_path / "missing.jpg")])
    assert res.exit_code == 1 and "no such file" in res.output
