import io
import json
import shutil
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from fakedetect.web import create_app


def _jpeg(size=(64, 48), quality=90, seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (*size[::-1], 3), dtype=np.uint8)).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _bomb_png(w=100_000, h=100_000) -> bytes:
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + chunk(
        b"IEND", b"")


@pytest.fixture(scope="module")
def app(tiny_run):
    return create_app(tiny_run, {"MAX_CONTENT_LENGTH": 1024 * 1024, "TESTING": True})


@pytest.fixture
def client(app):
    return app.test_client()


def test_health_and_model_card(client):
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json["model_loaded"] is True
    card = client.get("/api/v1/model").json
    assert card["class_names"] == ["real", "fake"] and "threshold" in card


def test_page_serves_its_own_assets(client):
    page = client.get("/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Drop an image here" in html and "http://" not in html.split("<footer")[0]
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/app.css").status_code == 200


def test_predict_one_image(client):
    r = client.post("/api/v1/predict?explain=1", data={"image": (io.BytesIO(_jpeg()), "../../etc/passwd")})
    assert r.status_code == 200, r.json
    res = r.json["results"][0]
    assert res["prob_fake"] + res["prob_real"] == pytest.approx(1.0)
    assert 0 <= res["prob_fake"] <= 1 and res["label"] in ("real", "fake")
    assert res["label"] == ("fake" if res["prob_fake"] >= res["threshold"] else "real")
    assert isinstance(res["uncertain"], bool) and len(res["variants"]) == 2
    assert res["image"]["format"] == "JPEG" and res["image"]["width"] == 64
    assert 85 <= res["image"]["jpeg_quality_estimate"] <= 95
    assert res["heatmap_png"].startswith("data:image/png;base64,")


def test_predict_several_images_and_formats(client):
    png, gif = io.BytesIO(), io.BytesIO()
    Image.new("RGBA", (40, 40), (10, 200, 30, 128)).save(png, "PNG")
    Image.new("L", (30, 50), 100).save(gif, "GIF")
    files = [(io.BytesIO(_jpeg()), "a.jpg"), (io.BytesIO(png.getvalue()), "b.png"),
             (io.BytesIO(gif.getvalue()), "c.gif")]
    r = client.post("/api/v1/predict", data={"image": files})
    assert r.status_code == 200
    assert [x["image"]["format"] for x in r.json["results"]] == ["JPEG", "PNG", "GIF"]
    assert "heatmap_png" not in r.json["results"][0]


@pytest.mark.parametrize("payload,message", [
    (b"just some text", "not an image"),
    (b"", "empty"),
    (_jpeg()[:300], "corrupt"),
    (_bomb_png(), "too large"),
])
def test_bad_uploads_are_400_with_a_message(client, payload, message):
    r = client.post("/api/v1/predict", data={"image": (io.BytesIO(payload), "x.jpg")})
    assert r.status_code == 400
    assert message in r.json["error"]
    assert client.get("/healthz").status_code == 200  # still serving


def _tf_rejects_pillow_accepts() -> bytes:
    """A small JPEG with a few hundred random bytes inserted before its end-of-image marker (FF D9), such that
    Pillow's full decode (the upload check) accepts it and TensorFlow's decoder rejects it."""
    import tensorflow as tf

    from fakedetect.web.service import check_upload

    good = _jpeg()
    assert good.endswith(b"\xff\xd9")
    for seed in range(200):
        junk = np.random.default_rng(seed).integers(0, 256, 300, dtype=np.uint8).tobytes()
        bad = good[:-2] + junk + good[-2:]
        try:
            check_upload(bad, "x.jpg")
        except ValueError:
            continue  # Pillow rejects this one: not the case under test
        try:
            tf.io.decode_image(bad, channels=3, expand_animations=False)
        except tf.errors.InvalidArgumentError:
            return bad
    raise AssertionError("no JPEG found that Pillow accepts and TensorFlow rejects")


def test_upload_that_only_tensorflow_rejects_is_400_not_500(client):
    bad = _tf_rejects_pillow_accepts()
    r = client.post("/api/v1/predict", data={"image": [(io.BytesIO(_jpeg()), "ok.jpg"), (io.BytesIO(bad), "x.jpg")]})
    assert r.status_code == 400, r.get_data(as_text=True)[:300]
    assert r.json["error"].startswith("'x.jpg': corrupt image: TensorFlow's decoder rejected it (")
    assert "Uncompress" in r.json["error"] and r.json["filename"] == "x.jpg"
    assert client.get("/healthz").status_code == 200


def _client_with_threshold(tiny_run, folder, threshold: float):
    """The tiny run copied to ``folder`` with its decision threshold (model.json) set to ``threshold``."""
    folder.mkdir()
    shutil.copy(tiny_run / "model.keras", folder / "model.keras")
    card = json.loads((tiny_run / "model.json").read_text())
    card["threshold"] = threshold
    (folder / "model.json").write_text(json.dumps(card))
    return create_app(folder, {"TESTING": True}).test_client()


def test_uncertain_verdict_follows_the_variants(client, tiny_run, tmp_path):
    # Score a few images; keep the one whose score moves most under one of the variants (JPEG 90, 75% resize).
    best = None
    for seed in range(4):
        data = _jpeg((96, 72), 95, seed)
        res = client.post("/api/v1/predict", data={"image": (io.BytesIO(data), "a.jpg")}).json["results"][0]
        for name, p in res["variants"].items():
            gap = abs(p - res["prob_fake"])
            if best is None or gap > best[0]:
                best = (gap, data, res, name)
    gap, data, scored, variant = best
    p0, pv = scored["prob_fake"], scored["variants"][variant]
    assert gap > 1e-5, scored  # the variants do move the score of a 48 px model on noise

    # Threshold exactly between the image's score and that variant's: the decision must flip.
    t = (p0 + pv) / 2
    flip = _client_with_threshold(tiny_run, tmp_path / "flip", t)
    res = flip.post("/api/v1/predict", data={"image": (io.BytesIO(data), "a.jpg")}).json["results"][0]
    assert res["threshold"] == t and res["prob_fake"] == pytest.approx(p0, abs=gap / 100)
    assert res["label"] == ("fake" if p0 >= t else "real")
    assert res["uncertain"] is True
    assert f"the decision flips when the image is {variant}" in res["uncertain_because"]

    # A threshold far from every score: the decision cannot flip.
    scores = [p0, *scored["variants"].values()]
    far = 0.999999 if max(scores) < 0.99 else 1e-6
    assert all(abs(p - far) > 1e-3 for p in scores)
    steady = _client_with_threshold(tiny_run, tmp_path / "steady", far)
    res = steady.post("/api/v1/predict", data={"image": (io.BytesIO(data), "a.jpg")}).json["results"][0]
    assert res["uncertain"] is False and res["uncertain_because"] == []
    assert res["label"] == ("real" if far > 0.5 else "fake")


def test_no_file_and_too_large(client):
    r = client.post("/api/v1/predict", data={})
    assert r.status_code == 400 and "no file" in r.json["error"]
    big = io.BytesIO(b"\xff" * (2 * 1024 * 1024))
    r = client.post("/api/v1/predict", data={"image": (big, "big.jpg")})
    assert r.status_code == 413 and "too large" in r.json["error"]
    assert client.post("/api/v1/predict", data={"image": (io.BytesIO(_jpeg()), "a.jpg")}).status_code == 200


def test_uploads_never_touch_the_disk(client, monkeypatch):
    import tempfile

    from werkzeug.datastructures import FileStorage
    from werkzeug.test import encode_multipart

    big = _jpeg((900, 700), 95)  # past Werkzeug's 500 KB spooling threshold, under the 1 MB limit
    assert len(big) > 500 * 1024
    boundary, body = encode_multipart({"image": FileStorage(io.BytesIO(big), "a b.jpg")})
    opened, real = [], tempfile.TemporaryFile
    monkeypatch.setattr(tempfile, "TemporaryFile", lambda *a, **k: opened.append(1) or real(*a, **k))
    r = client.post("/api/v1/predict", data=body, content_type=f"multipart/form-data; boundary={boundary}")
    assert r.status_code == 200 and opened == []


def test_api_reports_calibrated_probabilities_at_the_runs_threshold(client, calibrated_run, tiny_data):
    from fakedetect.metrics import apply_temperature

    files = sorted(p for p in tiny_data.rglob("*") if p.suffix in (".png", ".jpg"))  # 24 (at most 32 per request)

    def results(c):
        r = c.post("/api/v1/predict", data={"image": [(io.BytesIO(p.read_bytes()), p.name) for p in files]})
        assert r.status_code == 200, r.json
        return r.json["results"]

    plain = results(client)  # tiny_run: temperature 1, threshold 0.5
    cal = results(create_app(calibrated_run, {"TESTING": True}).test_client())
    p0, p1 = (np.array([r["prob_fake"] for r in rs]) for rs in (plain, cal))
    np.testing.assert_allclose(p1, apply_temperature(p0, 2.5), atol=1e-6)
    assert np.abs(p1 - p0).max() > 1e-3  # the temperature does change these scores
    for a, b in zip(plain, cal, strict=True):
        assert b["threshold"] == 0.4 and b["label"] == ("fake" if b["prob_fake"] >= 0.4 else "real")
        for k, v in a["variants"].items():  # the uncertainty check compares calibrated scores too
            assert b["variants"][k] == pytest.approx(float(apply_temperature(np.array([v]), 2.5)[0]), abs=1e-6)


def test_api_token(tiny_run):
    app = create_app(tiny_run, {"API_TOKEN": "s3cret"})
    c = app.test_client()
    assert c.get("/api/v1/model").status_code == 401
    assert c.get("/api/v1/model", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert c.get("/healthz").status_code == 200


def test_run_without_model(tmp_path):
    from fakedetect.errors import RunError

    with pytest.raises(RunError, match="holds no trained model"):
        create_app(tmp_path)
