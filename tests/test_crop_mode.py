"""Crop mode (`input: crop`): native-resolution crops in training, K fixed crops combined in scoring."""

import dataclasses
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from fakedetect.cli.main import main
from fakedetect.config import load_config, resolve
from fakedetect.framing import Framing, crop_offsets
from fakedetect.metrics import logit

S = 32


def _windows(img: np.ndarray, size: int) -> set[bytes]:
    """Every size x size window of an image and of its mirror image, as bytes."""
    out = set()
    for im in (img, img[:, ::-1]):
        for t in range(im.shape[0] - size + 1):
            for u in range(im.shape[1] - size + 1):
                out.add(im[t:t + size, u:u + size].tobytes())
    return out


def _noise_images(tmp_path):
    rng = np.random.default_rng(0)
    big = rng.integers(0, 256, (45, 60, 3), dtype=np.uint8)  # larger than S: cropped
    small = rng.integers(0, 256, (20, 26, 3), dtype=np.uint8)  # smaller than S: mirrored out to S
    paths = []
    for name, img in (("big.png", big), ("small.png", small)):
        Image.fromarray(img).save(tmp_path / name)
        paths.append(str(tmp_path / name))
    return paths, big, small


@pytest.mark.parametrize("mode", ["crop", "resize"])
def test_crop_mode_training_never_resamples_a_crop(mode, tmp_path):
    """With the shipped recipe's augmentations (zoom and rotation included; the photometric ones, which change
    values but move no pixel, off), every training crop is a window of the image pixel for pixel. Resize mode,
    the control, is not."""
    from fakedetect.data.pipeline import build_stream, mirror_pad

    cfg = load_config("general", {"input": mode, "image_size": S})
    assert cfg.augment.zoom > 0  # the recipe's zoom, which crop mode must leave out
    aug = dataclasses.replace(cfg.augment, contrast=0.0, jpeg_prob=0.0, blur_prob=0.0, rotation=0.05)
    paths, big, small = _noise_images(tmp_path)
    ds = build_stream(paths, [0, 1], cfg.framing if mode == "crop" else S, 4, aug, seed=3)
    windows = {0: _windows(big, S), 1: _windows(np.asarray(mirror_pad(small, S)), S)}
    found = []
    for x, y in ds.take(6):
        for crop, label in zip(x.numpy(), y.numpy(), strict=True):
            assert crop.shape == (S, S, 3)
            found.append(np.array_equal(crop, np.round(crop))
                         and crop.astype(np.uint8).tobytes() in windows[int(label)])
    assert all(found) if mode == "crop" else not all(found)


def test_resolve_turns_resampling_augmentations_off_in_crop_mode():
    cfg = resolve(load_config("general", {"input": "crop"}))
    assert cfg.augment.zoom == 0 and cfg.augment.rotation == 0 and cfg.augment.flip
    assert resolve(load_config("general")).augment.zoom == 0.1  # resize mode keeps them


def test_mirror_pad_matches_the_reference_indices():
    from fakedetect.data.pipeline import mirror_pad
    from fakedetect.framing import mirror_index

    img = np.random.default_rng(2).integers(0, 256, (7, 40, 3), dtype=np.uint8)  # 7 rows: mirrored 5 times over
    out = np.asarray(mirror_pad(img, S))
    assert out.shape == (S, 40, 3)
    np.testing.assert_array_equal(out, img[mirror_index(7, S)])
    np.testing.assert_array_equal(out[(S - 7) // 2:(S - 7) // 2 + 7], img)


def test_crop_offsets_cover_corners_centre_and_grid():
    assert crop_offsets(50, 70, 32, 5) == [(0, 0), (0, 38), (18, 0), (18, 38), (9, 19)]
    assert crop_offsets(50, 70, 32, 1) == [(9, 19)]
    assert len(set(crop_offsets(50, 70, 32, 9))) == 9


@pytest.fixture(scope="module")
def crop_run(tiny_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("crop") / "run"
    res = CliRunner().invoke(main, ["train", "--data", str(tiny_data), "--out", str(run), "--backbone",
                                    "efficientnet-lite0", "--image-size", str(S), "--input", "crop", "--crops", "5",
                                    "--epochs-frozen", "1", "--epochs-finetune", "1", "--batch-size", "8",
                                    "--val-fraction", "0.25"])
    assert res.exit_code == 0, res.output
    assert "5 native-resolution 32 px crop(s)" in res.output
    return run


def test_a_crop_run_records_its_input_mode_and_scores_the_combined_logit(crop_run, tiny_data):
    from fakedetect.run import load_run

    card = json.loads((crop_run / "model.json").read_text())
    assert (card["input"], card["crops"], card["crop_combine"], card["image_size"]) == ("crop", 5, "mean", S)
    assert card["generators"] == {"data": ["not stated"]} and card["generalisation"] is None
    run = load_run(crop_run)
    paths = sorted(str(p) for p in (tiny_data / "fake").glob("*"))[:4]
    s = run.score(paths=paths)
    assert s.crops.shape == (4, 5)
    # the image's calibrated logit is the mean of its crops' calibrated logits (calibration commutes with it)
    np.testing.assert_allclose(logit(s.prob_fake), logit(s.crops).mean(axis=1), atol=1e-4)
    from fakedetect.data.pipeline import decode_bytes

    images = [np.asarray(decode_bytes(open(p, "rb").read())) for p in paths]  # as the files are decoded
    t = run.score(images=images)
    np.testing.assert_allclose(t.prob_fake, s.prob_fake, atol=1e-6)
    np.testing.assert_allclose(t.crops, s.crops, atol=1e-6)
    # each crop is scored as the model scores that window on its own
    img = images[0]
    (t0, l0) = crop_offsets(*img.shape[:2], S, 5)[1]
    alone = float(run.model(img[None, t0:t0 + S, l0:l0 + S].astype("float32"))[0, 0])
    np.testing.assert_allclose(run.calibrate(np.array([alone]))[0], s.crops[0, 1], atol=1e-5)


def test_crop_mode_agrees_on_both_engines(crop_run, tiny_data):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("tf2onnx")
    from fakedetect.run import load_run

    paths = sorted(str(p) for p in (tiny_data / "fake").glob("*"))[:3] + sorted(
        str(p) for p in (tiny_data / "real").glob("*"))[:3]
    for tta in (False, True):
        a = load_run(crop_run).score(paths=paths, tta=tta)
        b = load_run(crop_run, "onnxruntime").score(paths=paths, tta=tta)
        np.testing.assert_allclose(b.prob_fake, a.prob_fake, atol=1e-5)
        np.testing.assert_allclose(b.crops, a.crops, atol=1e-5)
        np.testing.assert_allclose(b.domain_distance, a.domain_distance, rtol=1e-5)


def test_max_rule_takes_the_most_fake_crop(crop_run, tiny_data):
    from fakedetect.run import score_files

    run_fr = Framing(S, "crop", 5, "max")
    paths = sorted(str(p) for p in (tiny_data / "real").glob("*"))[:3]
    from fakedetect.run import load_run

    run = load_run(crop_run)
    raw, _, crops = score_files(run.model, paths, run_fr, with_crops=True)
    np.testing.assert_allclose(raw, crops.max(axis=1), atol=1e-6)


def test_crop_run_predicts_and_evaluates(crop_run, tiny_data, tmp_path):
    res = CliRunner().invoke(main, ["evaluate", str(crop_run), "--data", str(tiny_data), "--out",
                                    str(tmp_path / "ev")])
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert 0 <= metrics["roc_auc"] <= 1
    res = CliRunner().invoke(main, ["predict", str(crop_run), str(tiny_data / "fake"), "--out",
                                    str(tmp_path / "p.csv")])
    assert res.exit_code == 0, res.output


def test_a_crop_runs_export_with_its_rule_gives_the_runs_score(crop_run, tiny_data, tmp_path):
    import tensorflow as tf

    from fakedetect.data.pipeline import decode_bytes, scoring_crops
    from fakedetect.run import load_run

    out = tmp_path / "m.tflite"
    res = CliRunner().invoke(main, ["export", str(crop_run), "--format", "tflite", "--out", str(out)])
    assert res.exit_code == 0, res.output
    side = json.loads(out.with_suffix(".tflite.json").read_text())
    assert side["input"] == "crop" and "mean over the crops" in side["export_crop_rule"]
    run = load_run(crop_run)
    path = sorted((tiny_data / "fake").glob("*"))[0]
    crops = np.asarray(scoring_crops(decode_bytes(path.read_bytes()), run.framing))
    interp = tf.lite.Interpreter(model_path=str(out))
    inp, outp = interp.get_input_details()[0], interp.get_output_details()[0]
    interp.resize_tensor_input(inp["index"], list(crops.shape))
    interp.allocate_tensors()
    interp.set_tensor(inp["index"], crops)
    interp.invoke()
    per_crop = interp.get_tensor(outp["index"]).reshape(-1)
    combined = 1 / (1 + np.exp(-logit(per_crop).mean()))  # the sidecar's rule
    np.testing.assert_allclose(combined, run.score(paths=[str(path)]).prob_fake[0], atol=1e-5)


@pytest.mark.parametrize("shape", [(70, 90), (20, 24)])  # larger than S; smaller than S (mirrored out)
def test_the_api_in_crop_mode_names_the_crop_that_decided_and_scores_variants_per_crop(crop_run, shape):
    import base64
    import io

    from fakedetect.run import load_run
    from fakedetect.web import create_app

    img = np.random.default_rng(4).integers(0, 256, (*shape, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG")
    client = create_app(crop_run, {"TESTING": True}).test_client()
    r = client.post("/api/v1/predict?explain=1", data={"image": (io.BytesIO(buf.getvalue()), "a.png")})
    assert r.status_code == 200, r.json
    res = r.json["results"][0]
    s = load_run(crop_run).score(images=[img])
    assert abs(res["prob_fake"] - s.prob_fake[0]) < 1e-6
    assert len(res["crops"]) == 5 and "5 native-resolution" in res["input"]
    probs = [c["prob_fake"] for c in res["crops"]]
    np.testing.assert_allclose(probs, s.crops[0], atol=1e-6)
    lead = res["decided_by_crop"]
    assert probs[lead] == (max(probs) if res["label"] == "fake" else min(probs))
    for c in res["crops"]:  # boxes lie inside the image
        assert 0 <= c["top"] and c["top"] + c["height"] <= shape[0] and 0 <= c["left"]
        assert c["left"] + c["width"] <= shape[1] and c["height"] == min(S, shape[0])
    assert set(res["variants"]) == {"re-encoded as JPEG 90", "resized to 75% and back"}
    assert res["claims"]["unseen_generator_auc"] is None and "not measured" in res["claims"]["unseen_generator_note"]
    heat = Image.open(io.BytesIO(base64.b64decode(res["heatmap_png"].split(",", 1)[1])))
    assert heat.size == (shape[1], shape[0])
