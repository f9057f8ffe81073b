"""Issue 25: ONNX Runtime as the scoring engine, behind the one scoring call. Both engines must agree on a
calibrated run (temperature 2.5, threshold 0.4, a domain model) in predict, evaluate and the API."""

from __future__ import annotations

import io
import json
import os
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from fakedetect.cli import main
from fakedetect.engine import ENGINE_DIR, EngineError, OnnxEngine, choose_engine, model_hash, ort_threads
from fakedetect.run import load_run

pytest.importorskip("onnxruntime")
pytest.importorskip("tf2onnx")

TOL = 1e-5
# The API on ONNX Runtime also frames without TensorFlow (fakedetect.pixels: within 6e-5 grey levels of it), which
# this 48 px test model turns into up to ~3e-5 of P(fake): the API's bound covers preprocessing and engine together.
API_TOL = 1e-4


def agree(a: dict, b: dict, threshold: float, tol: float = TOL) -> int:
    """Asserts two rows agree (P(fake) within ``tol``; the domain distance, a sum of Mahalanobis distances of the
    order of 1-4, within ``tol`` relative; label, in_domain exactly unless within ``tol`` of the threshold);
    returns 1 when the row was that close to the threshold (excluded from the exact checks), else 0."""
    assert a["prob_fake"] == pytest.approx(b["prob_fake"], abs=tol)
    assert a["domain_distance"] == pytest.approx(b["domain_distance"], rel=tol)
    if abs(a["prob_fake"] - threshold) < tol:
        return 1
    assert a["label"] == b["label"] and a["in_domain"] == b["in_domain"]
    return 0


@pytest.fixture(scope="module")
def engine_run(calibrated_run, tmp_path_factory):
    """A copy of the calibrated run of its own (its graphs cached beside it)."""
    out = tmp_path_factory.mktemp("engine") / "run"
    shutil.copytree(calibrated_run, out)
    return out


def test_predict_agrees_on_both_engines_and_records_the_engine(engine_run, tiny_data, tmp_path):
    rows = {}
    for engine in ("tensorflow", "onnxruntime"):
        out = tmp_path / f"{engine}.json"
        res = CliRunner().invoke(main, ["predict", str(engine_run), str(tiny_data), "--out", str(out),
                                        "--engine", engine])
        assert res.exit_code == 0, res.output
        got = json.loads(out.read_text())
        assert {r["engine"] for r in got["predictions"]} == {engine}
        rows[engine] = got["predictions"]
    tf_rows, ort_rows = rows["tensorflow"], rows["onnxruntime"]
    assert [r["path"] for r in tf_rows] == [r["path"] for r in ort_rows] and len(tf_rows) >= 8
    near = sum(agree(a, b, 0.4) for a, b in zip(tf_rows, ort_rows, strict=True))
    assert near < len(tf_rows)  # the exact checks ran on real rows
    assert any(r["prob_fake"] != 0.5 for r in tf_rows)
    assert list((engine_run / ENGINE_DIR).glob(f"resize-s48-{model_hash(engine_run)[:16]}-*.onnx"))


def test_evaluate_and_tta_agree_on_both_engines(engine_run, tiny_data, tmp_path):
    import pandas as pd

    preds = {}
    for engine in ("tensorflow", "onnxruntime"):
        out = tmp_path / engine
        res = CliRunner().invoke(main, ["evaluate", str(engine_run), "--data", str(tiny_data), "--out", str(out),
                                        "--engine", engine, "--tta"])
        assert res.exit_code == 0, res.output
        assert json.loads((out / "metrics.json").read_text())["model"]["engine"] == engine
        preds[engine] = pd.read_csv(out / "predictions.csv")
    a, b = preds["tensorflow"], preds["onnxruntime"]
    assert np.abs(a["prob_fake"] - b["prob_fake"]).max() < TOL
    assert (np.abs(a["domain_distance"] - b["domain_distance"]) / a["domain_distance"]).max() < TOL
    clear = np.abs(a["prob_fake"] - 0.4) >= TOL
    assert (a["predicted"][clear] == b["predicted"][clear]).all() and (a["in_domain"] == b["in_domain"]).all()


def _jpeg(seed: int, size=(90, 70)) -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (*size[::-1], 3), dtype=np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def test_the_api_agrees_on_both_engines_variants_included(engine_run):
    from fakedetect.web import create_app

    answers = {}
    for engine in ("tensorflow", "onnxruntime"):
        client = create_app(engine_run, {"TESTING": True, "ENGINE": engine}).test_client()
        # two uploads of at least 4x the 48 px input: their downscale variant is composed with the framing
        files = [(io.BytesIO(_jpeg(i, (90, 70) if i < 4 else (260, 200))), f"{i}.jpg") for i in range(6)]
        r = client.post("/api/v1/predict", data={"image": files})
        assert r.status_code == 200, r.json
        answers[engine] = r.json["results"]
        assert {res["engine"] for res in r.json["results"]} == {engine}
    for a, b in zip(answers["tensorflow"], answers["onnxruntime"], strict=True):
        if not agree(a, b, a["threshold"], API_TOL):
            assert a["uncertain"] == b["uncertain"]
        for name, p in a["variants"].items():
            assert b["variants"][name] == pytest.approx(p, abs=API_TOL)


def test_the_graph_is_found_again_without_tensorflow_and_a_new_model_is_never_read_stale(engine_run, tmp_path):
    run = load_run(engine_run, "onnxruntime")
    assert run._model is None  # on ONNX Runtime the Keras model is loaded only to make a graph
    fr = run.framing
    path = run.onnx.graph(False, fr)
    again = OnnxEngine(engine_run)  # no model to convert with: it must find the cached graph
    assert again.graph(False, fr) == path
    moved = tmp_path / "retrained"
    shutil.copytree(engine_run, moved)
    with open(moved / "model.keras", "ab") as f:
        f.write(b"\0")  # another model file: another hash
    with pytest.raises(EngineError, match="no ONNX graph"):
        OnnxEngine(moved).graph(False, fr)


def test_a_read_only_run_caches_its_graph_in_the_cache(engine_run, tmp_path, monkeypatch):
    from fakedetect import engine

    ro = tmp_path / "ro"
    shutil.copytree(engine_run, ro, ignore=shutil.ignore_patterns(ENGINE_DIR))
    monkeypatch.setenv("FAKEDETECT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(engine, "_writable", lambda folder: not str(folder).startswith(str(ro)))  # as for a user
    run = load_run(ro, "onnxruntime")
    path = run.onnx.graph(False, run.framing)
    assert str(path).startswith(str(tmp_path / "cache")) and not (ro / ENGINE_DIR).exists()
    assert OnnxEngine(ro).graph(False, run.framing) == path  # found there again


def test_a_folder_without_write_permission_is_not_writable(tmp_path):
    from fakedetect.engine import _writable

    assert _writable(tmp_path / "engine")  # not there yet: its parent decides
    (tmp_path / "locked").mkdir(mode=0o555)
    if os.access(tmp_path / "locked", os.W_OK):
        pytest.skip("running as a user who can write anywhere (root)")
    assert not _writable(tmp_path / "locked" / "engine")


def test_auto_and_missing_onnxruntime(engine_run, monkeypatch):
    from fakedetect import engine

    fr = load_run(engine_run, "onnxruntime").framing
    assert choose_engine("auto", engine_run, fr) == "onnxruntime"
    monkeypatch.setattr(engine, "onnxruntime_installed", lambda: False)
    assert choose_engine("auto", engine_run, fr) == "tensorflow"
    with pytest.raises(EngineError, match="pip install onnxruntime"):
        choose_engine("onnxruntime", engine_run, fr)
    with pytest.raises(EngineError, match="unknown engine"):
        choose_engine("torch")


def test_auto_without_the_converter_uses_a_cached_graph_only(engine_run, tmp_path, monkeypatch):
    from fakedetect import engine

    fr = load_run(engine_run, "onnxruntime").framing
    OnnxEngine(engine_run, load_run(engine_run).onnx_source).graph(False, fr)
    monkeypatch.setattr(engine, "converter_version", lambda: None)
    assert choose_engine("auto", engine_run, fr) == "onnxruntime"
    bare = tmp_path / "bare"
    shutil.copytree(engine_run, bare, ignore=shutil.ignore_patterns(ENGINE_DIR))
    monkeypatch.setenv("FAKEDETECT_CACHE", str(tmp_path / "empty-cache"))
    assert choose_engine("auto", bare, fr) == "tensorflow"


def test_threads(monkeypatch):
    monkeypatch.delenv("FAKEDETECT_ORT_THREADS", raising=False)
    assert ort_threads(3) == 3 and ort_threads() >= 1
    monkeypatch.setenv("FAKEDETECT_ORT_THREADS", "2")
    assert ort_threads(5) == 2
    monkeypatch.setenv("FAKEDETECT_ORT_THREADS", "many")
    with pytest.raises(EngineError, match="whole number"):
        ort_threads()


def test_serve_makes_the_graph_before_the_workers_start(engine_run, tmp_path, monkeypatch):
    from fakedetect.cli.serve import prepare_engine

    fresh = tmp_path / "fresh"
    shutil.copytree(engine_run, fresh, ignore=shutil.ignore_patterns(ENGINE_DIR))
    for name in ("FAKEDETECT_ORT_THREADS", "OPENBLAS_NUM_THREADS", "TF_ONEDNN_USE_SYSTEM_ALLOCATOR"):  # unset now
        monkeypatch.setenv(name, "x")
        monkeypatch.delenv(name)
    monkeypatch.setenv("MKL_NUM_THREADS", "3")  # the user's own setting stays
    assert prepare_engine(fresh, "auto", 64, 0) == "onnxruntime"
    assert os.environ["FAKEDETECT_ORT_THREADS"] == "1"  # 64 workers on this machine's cores
    assert os.environ["OPENBLAS_NUM_THREADS"] == "1" and os.environ["MKL_NUM_THREADS"] == "3"  # numpy's BLAS too
    assert os.environ["TF_ONEDNN_USE_SYSTEM_ALLOCATOR"] == "true"  # TensorFlow's memory given back (issue 22)
    assert len(list((fresh / ENGINE_DIR).glob("*.onnx"))) == 1
    assert prepare_engine(fresh, "tensorflow", 1, 0) == "tensorflow"
