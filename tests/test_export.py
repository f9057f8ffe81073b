"""`fakedetect export`: every format outputs the calibrated P(fake) that fakedetect itself reports."""

import json
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from fakedetect.cli.main import main

TEMPERATURE = 2.5  # far enough from 1 that an export without the calibration fails the parity tests
OUT_NAME = {"saved_model": "m", "tflite": "m.tflite", "onnx": "m.onnx"}


@pytest.fixture(scope="module")
def calib_run(calibrated_run):
    """The session's calibrated copy of the tiny run: temperature TEMPERATURE, threshold 0.4."""
    return calibrated_run


@pytest.fixture(scope="module")
def reference(calib_run):
    """Pixels and what fakedetect reports for them: run.calibrate(the Keras model's raw P(fake))."""
    from fakedetect.run import load_run

    run = load_run(calib_run)
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.uniform(0, 255, (4, 48, 48, 3)), np.zeros((1, 48, 48, 3)),
                        np.full((1, 48, 48, 3), 255.0)]).astype("float32")
    raw = run.model.predict(x, verbose=0).reshape(-1)
    ref = run.calibrate(raw)
    assert run.temperature == TEMPERATURE
    assert np.abs(ref - raw).max() > 1e-3, "calibration must change the outputs for this test to mean anything"
    return x, ref


def _export(run, fmt, out, *extra):
    res = CliRunner().invoke(main, ["export", str(run), "--format", fmt, "--out", str(out), *extra])
    assert res.exit_code == 0, res.output
    assert "calibrated P(fake)" in res.output and "threshold" in res.output
    return res


def _run_tflite(path, x):
    try:
        from ai_edge_litert.interpreter import Interpreter  # tf.lite.Interpreter is deprecated in TF 2.21
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter  # noqa: N806
    interp = Interpreter(model_path=str(path))
    inp, outp = interp.get_input_details()[0], interp.get_output_details()[0]
    interp.resize_tensor_input(inp["index"], x.shape)
    interp.allocate_tensors()
    interp.set_tensor(inp["index"], x)
    interp.invoke()
    return interp.get_tensor(outp["index"]).reshape(-1)


def _run_onnx(path, x):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["image"]
    return sess.run(None, {"image": x})[0].reshape(-1)


@pytest.mark.parametrize("fmt", ["saved_model", "tflite", "onnx"])
def test_export_outputs_calibrated_probabilities(calib_run, reference, tmp_path, fmt):
    if fmt == "onnx":
        pytest.importorskip("tf2onnx", reason="ONNX export needs tf2onnx (pip install -e '.[onnx]')")
        pytest.importorskip("onnxruntime", reason="the ONNX parity check needs onnxruntime")
    x, ref = reference
    out = tmp_path / OUT_NAME[fmt]
    _export(calib_run, fmt, out)
    if fmt == "saved_model":
        import tensorflow as tf

        loaded = tf.saved_model.load(str(out))  # keep a reference: its variables die with it
        got = np.asarray(loaded.serve(x)).reshape(-1)
        got_sig = np.asarray(next(iter(loaded.signatures["serving_default"](image=x).values()))).reshape(-1)
        np.testing.assert_allclose(got_sig, ref, atol=1e-4)
    elif fmt == "tflite":
        got = _run_tflite(out, x)
    else:
        got = _run_onnx(out, x)
    np.testing.assert_allclose(got, ref, atol=1e-4)


def test_calibration_graph_matches_metrics_at_the_extremes():
    """The in-graph clip + logit + temperature equals metrics.apply_temperature, saturated outputs included."""
    import tensorflow as tf

    from fakedetect.export import calibrated_fn
    from fakedetect.metrics import apply_temperature

    p = np.array([0.0, 1e-9, 1e-7, 3e-7, 0.3, 0.5, 0.9, 1 - 2.4e-7, 1 - 1.2e-7, 1 - 6e-8, 1.0], dtype="float32")
    x = np.repeat(p[:, None, None, None], 3, axis=-1)  # N x 1 x 1 x 3; the "model" returns the first pixel

    def model(image, training=False):
        return image[:, 0, 0, :1]

    for t in (0.5, 1.0, 2.5, 54.6):
        got = np.asarray(calibrated_fn(model, t, 1)(tf.constant(x))).reshape(-1)
        np.testing.assert_allclose(got, apply_temperature(p, t), atol=1e-6, err_msg=f"temperature {t}")


def test_export_sidecar_has_threshold_and_temperature(calib_run, tmp_path):
    out = tmp_path / "m.tflite"
    res = _export(calib_run, "tflite", out)
    side = out.with_name("m.tflite.json")
    assert str(side) in res.output
    card = json.loads(side.read_text())
    run_card = json.loads((calib_run / "model.json").read_text())
    assert card["threshold"] == run_card["threshold"] == 0.4 and card["temperature"] == TEMPERATURE
    assert card["calibration"]["temperature"] == TEMPERATURE and card["export_format"] == "tflite"
    assert card["export_calibrated"] is True
    assert "calibrated" in card["export_output"] and "threshold" in card["export_output"]
    root = run_card["data"]["data_root"]  # a path of the training machine: never in what is exported
    assert root.startswith("/") and root not in side.read_text() and card["data"]["sources"]


def test_export_refuses_an_existing_path_without_overwrite(calib_run, tmp_path):
    out = tmp_path / "m.tflite"
    out.write_bytes(b"keep me")
    res = CliRunner().invoke(main, ["export", str(calib_run), "--format", "tflite", "--out", str(out)])
    assert res.exit_code == 1 and "already exists" in res.output and "--overwrite" in res.output
    assert out.read_bytes() == b"keep me"
    folder = tmp_path / "sm"
    folder.mkdir()
    res = CliRunner().invoke(main, ["export", str(calib_run), "--format", "saved_model", "--out", str(folder)])
    assert res.exit_code == 1 and "already exists" in res.output


def test_export_onnx_without_tf2onnx_is_a_one_line_error(calib_run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # `import tf2onnx` now raises ImportError
    out = tmp_path / "m.onnx"
    res = CliRunner().invoke(main, ["export", str(calib_run), "--format", "onnx", "--out", str(out)])
    assert res.exit_code == 1 and "tf2onnx" in res.output and ".[onnx]" in res.output
    assert "saved_model or tflite" in res.output and len(res.output.strip().splitlines()) == 1
    assert not out.exists()
