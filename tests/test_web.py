import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from fakedetect.web import create_app


def _jpeg(size=(64, 48), quality=90) -> bytes:
    rng = np.random.default_rng(0)
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


def test_no_file_and_too_large(client):
    r = client.post("/api/v1/predict", data={})
    assert r.status_code == 400 and "no file" in r.json["error"]
    big = io.BytesIO(b"\xff" * (2 * 1024 * 1024))
    r = client.post("/api/v1/predict", data={"image": (big, "big.jpg")})
    assert r.status_code == 413 and "too large" in r.json["error"]
    assert client.post("/api/v1/predict", data={"image": (io.BytesIO(_jpeg()), "a.jpg")}).status_code == 200


def test_nothing_left_on_disk(client, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    big = _jpeg((900, 700), 95)  # large enough for Werkzeug to spool it
    assert client.post("/api/v1/predict", data={"image": (io.BytesIO(big), "a b.jpg")}).status_code == 200
    assert list(tmp_path.iterdir()) == []


def test_api_token(tiny_run):
    app = create_app(tiny_run, {"API_TOKEN": "s3cret"})
    c = app.test_client()
    assert c.get("/api/v1/model").status_code == 401
    assert c.get("/api/v1/model", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert c.get("/healthz").status_code == 200


def test_run_without_model(tmp_path):
    from fakedetect.inference import RunError

    with pytest.raises(RunError, match="holds no trained model"):
        create_app(tmp_path)
