import json
import shutil

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from fakedetect.cli import main

from .conftest import write_bad_files


def test_predict_folder_with_corrupt_files(tiny_run, tiny_data, tmp_path):
    data = tmp_path / "imgs"
    shutil.copytree(tiny_data, data)
    write_bad_files(data / "real" / "nested")
    out = tmp_path / "pred.csv"
    res = CliRunner().invoke(main, ["predict", str(tiny_run), str(data), "--out", str(out)])
    assert res.exit_code == 0, res.output
    df = pd.read_csv(out)
    assert list(df.columns) == ["path", "prob_fake", "prob_real", "label"]
    assert len(df) == 24  # one row per readable image; the 4 bad files and README.txt reported instead
    assert res.output.count("unreadable:") == 5 and "README.txt" in res.output
    assert df.prob_fake.between(0, 1).all() and set(df.label) <= {"real", "fake"}
    card = json.loads((tiny_run / "model.json").read_text())
    assert ((df.prob_fake >= card["threshold"]) == (df.label == "fake")).all()
    # Same scores as evaluate's path: the predictions of a folder do not depend on the command.
    again = CliRunner().invoke(main, ["predict", str(tiny_run), str(data), "--out", str(out)])
    assert again.exit_code == 1 and "already exists" in again.output


def test_predict_single_file_to_terminal_and_json(tiny_run, tiny_data, tmp_path):
    img = next((tiny_data / "fake").glob("*.png"))
    res = CliRunner().invoke(main, ["predict", str(tiny_run), str(img)])
    assert res.exit_code == 0 and img.name in res.output and "1 scored" in res.output
    out = tmp_path / "p.json"
    assert CliRunner().invoke(main, ["predict", str(tiny_run), str(img), "--out", str(out)]).exit_code == 0
    assert len(json.loads(out.read_text())["predictions"]) == 1
    res = CliRunner().invoke(main, ["predict", str(tiny_run), str(tmp_path / "missing.jpg")])
    assert res.exit_code == 1 and "no such file" in res.output


@pytest.mark.parametrize("fmt", ["saved_model", "tflite"])
def test_export_matches_keras(tiny_run, tmp_path, fmt):
    import tensorflow as tf

    from fakedetect.model import load_model

    out = tmp_path / ("m" if fmt == "saved_model" else "m.tflite")
    res = CliRunner().invoke(main, ["export", str(tiny_run), "--format", fmt, "--out", str(out)])
    assert res.exit_code == 0, res.output
    x = np.random.default_rng(1).uniform(0, 255, (4, 48, 48, 3)).astype("float32")
    ref = load_model(tiny_run / "model.keras").predict(x, verbose=0).reshape(-1)
    if fmt == "saved_model":
        loaded = tf.saved_model.load(str(out))  # keep a reference: its variables die with it
        got = np.asarray(loaded.serve(x)).reshape(-1)
    else:
        interp = tf.lite.Interpreter(model_path=str(out))
        inp, outp = interp.get_input_details()[0], interp.get_output_details()[0]
        got = []
        for row in x:
            interp.resize_tensor_input(inp["index"], (1, 48, 48, 3))
            interp.allocate_tensors()
            interp.set_tensor(inp["index"], row[None])
            interp.invoke()
            got.append(interp.get_tensor(outp["index"]).reshape(-1)[0])
        got = np.array(got)
    np.testing.assert_allclose(got, ref, atol=1e-4)


def test_export_onnx_without_tf2onnx_is_a_clear_error(tiny_run, tmp_path):
    pytest.importorskip("tensorflow")
    try:
        import tf2onnx  # noqa: F401

        pytest.skip("tf2onnx is installed")
    except ImportError:
        pass
    res = CliRunner().invoke(main, ["export", str(tiny_run), "--format", "onnx", "--out", str(tmp_path / "m.onnx")])
    assert res.exit_code == 1 and "tf2onnx" in res.output
