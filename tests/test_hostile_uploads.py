"""Issue 22's audit, the upload and output side: animations, request cost, the token before the drain, host
names, paths that leave the machine, file names in tables, the umask."""

import csv
import io
import json
import os
import threading
import time

import numpy as np
import pytest
from PIL import Image

from fakedetect.atomic import current_umask, safe_cell
from fakedetect.data.checks import ImageInfo, _ByteBudget, check_bytes, check_image
from fakedetect.web import create_app
from fakedetect.web.guards import host_allowed
from fakedetect.web.service import Scorer, check_upload, variant_source

from .test_upload_limits import CountingBody


def _animated(fmt: str, first=(64, 64), second=(10_000, 10_000)) -> bytes:
    """Two frames: a small first one and a much larger second one (as the audit's 75 KB GIF)."""
    mode = "P" if fmt == "GIF" else "RGB"
    a = Image.new(mode, first, 1 if mode == "P" else (200, 30, 30))
    b = Image.new(mode, second, 2 if mode == "P" else (30, 200, 30))
    buf = io.BytesIO()
    a.save(buf, fmt, save_all=True, append_images=[b], **({"lossless": True} if fmt == "WEBP" else {}))
    return buf.getvalue()


def _jpeg(size=(64, 48), seed=0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size[::-1], 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def scorer(tiny_run):
    from fakedetect.run import load_run

    return Scorer(load_run(tiny_run))


def test_animated_gif_is_scored_on_its_first_frame_only(scorer):
    data = _animated("GIF")
    assert len(data) < 100_000
    c = check_upload(data, "anim.gif")
    assert (c.facts["width"], c.facts["height"]) == (64, 64) and c.pillow_only
    img = scorer.decode(c)  # the old code let TensorFlow decode both frames: 10000 x 10000 (400 MB)
    assert tuple(img.shape) == (64, 64, 3)
    out = scorer.analyse(c)
    assert 0 <= out["prob_fake"] <= 1


def test_animated_webp_is_accepted_and_scored_on_its_first_frame(scorer):
    data = _animated("WEBP", second=(64, 64))  # WebP frames share one canvas
    c = check_upload(data, "anim.webp")  # the old code: passed the checks, then TensorFlow refused it
    assert c.pillow_only
    assert tuple(scorer.decode(c).shape) == (64, 64, 3)
    assert 0 <= scorer.analyse(c)["prob_fake"] <= 1


def test_animated_files_go_to_pillow_in_train_evaluate_and_predict(tmp_path):
    import tensorflow as tf

    from fakedetect.data.pipeline import decode_image

    path = tmp_path / "anim.gif"
    path.write_bytes(_animated("GIF"))
    info = check_image(path, tf_verify=True)
    assert info.error is None and info.animated and not info.tf_decodable
    ds = tf.data.Dataset.from_tensors((str(path), not info.tf_decodable)).map(decode_image)  # as the pipeline
    assert tuple(next(iter(ds)).shape) == (64, 64, 3)


def test_still_gif_still_goes_to_tensorflow():
    buf = io.BytesIO()
    Image.new("P", (40, 30), 3).save(buf, "GIF")
    info = check_bytes(buf.getvalue(), ImageInfo("still.gif"))
    assert info.error is None and not info.animated and info.tf_decodable


def test_pillow_opens_only_the_accepted_formats():
    buf = io.BytesIO()
    Image.new("RGB", (20, 20)).save(buf, "TGA")  # a format Pillow reads, but not one fakedetect accepts
    info = check_bytes(buf.getvalue(), ImageInfo("x.tga"))
    assert info.error == "not an image"  # the TGA parser never saw the bytes (before: "unsupported image format")


def test_variants_start_from_a_bounded_copy_and_small_images_are_untouched():
    big = np.zeros((3000, 2000, 3), np.uint8)
    assert variant_source(big, 96).shape[:2] == (1024, 683)
    small = np.zeros((500, 300, 3), np.uint8)
    assert variant_source(small, 96) is small


def test_pixels_per_request_are_capped(tiny_run):
    app = create_app(tiny_run, {"TESTING": True, "MAX_REQUEST_PIXELS": 64 * 48 * 2})
    c = app.test_client()
    two = [(io.BytesIO(_jpeg(seed=i)), f"{i}.jpg") for i in range(2)]
    assert c.post("/api/v1/predict", data={"image": two}).status_code == 200
    three = [(io.BytesIO(_jpeg(seed=i)), f"{i}.jpg") for i in range(3)]
    r = c.post("/api/v1/predict", data={"image": three})
    assert r.status_code == 413 and "too many pixels" in r.json["error"]


def _call(app, path, length, headers=()):
    body = CountingBody(length)
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": path, "SERVER_NAME": "localhost", "SERVER_PORT": "80",
               "HTTP_HOST": "localhost", "wsgi.url_scheme": "http", "wsgi.input": body, "wsgi.errors": io.StringIO(),
               "CONTENT_LENGTH": str(length), "CONTENT_TYPE": "multipart/form-data; boundary=x",
               **dict(headers)}
    got = {}

    def start_response(status, hdrs, exc_info=None):
        got["status"], got["headers"] = status, dict(hdrs)

    b"".join(app.wsgi_app(environ, start_response))
    return got, body.nread


def test_token_is_checked_before_an_over_limit_body_is_drained(tiny_run):
    app = create_app(tiny_run, {"API_TOKEN": "s3cret", "MAX_CONTENT_LENGTH": 1024})
    got, nread = _call(app, "/api/v1/predict", 5_000_000)
    assert got["status"].startswith("401") and nread == 0  # before: 5 MB read and thrown away, then a 413
    assert got["headers"].get("Connection") == "close"
    got, nread = _call(app, "//api/v1/predict", 5_000_000)
    assert got["status"].startswith("401") and nread == 0
    got, nread = _call(app, "/", 5_000_000)  # not the API, but no token either: not read
    assert got["status"].startswith("413") and nread == 0
    got, nread = _call(app, "/api/v1/predict", 5_000_000, {"CONTENT_LENGTH": "", "HTTP_TRANSFER_ENCODING": "chunked"})
    assert got["status"].startswith("401") and nread <= 2 * 1024 * 1024  # chunked: drained up to the limit only
    got, nread = _call(app, "/api/v1/predict", 5_000_000, {"HTTP_AUTHORIZATION": "Bearer s3cret"})
    assert got["status"].startswith("413") and nread == 5_000_000  # with the token: drained so it reads the 413


@pytest.mark.parametrize("host, ok", [
    ("localhost:8000", True), ("127.0.0.1:8000", True), ("[::1]:8000", True), ("10.1.2.3", True),
    ("evil.example:8000", False), ("localhost.evil.example", False), ("fakedetect.example.org", True),
    ("a.lab.example.org", True), ("lab.example.org.evil", False),
])
def test_host_names(host, ok):
    assert host_allowed(host, ["localhost", "fakedetect.example.org", ".lab.example.org"]) is ok


def test_unknown_host_is_refused_and_pages_cannot_be_framed(tiny_run):
    app = create_app(tiny_run, {"TESTING": True})
    c = app.test_client()
    r = c.get("/healthz", headers={"Host": "rebind.attacker.example"})
    assert r.status_code == 400 and "--allowed-host" in r.json["error"]
    r = c.get("/", headers={"Host": "localhost:8000"})
    assert r.status_code == 200 and "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
    app.config["ALLOWED_HOSTS"] = ["*"]
    assert c.get("/healthz", headers={"Host": "rebind.attacker.example"}).status_code == 200


def test_no_training_path_leaves_the_machine(tiny_run, tiny_data, tmp_path):
    root = str(tiny_data.resolve())
    assert root in (tiny_run / "model.json").read_text()  # the run keeps it (resume reads it)
    app = create_app(tiny_run, {"TESTING": True})
    text = app.test_client().get("/api/v1/model").get_data(as_text=True)
    assert root not in text and str(tiny_data.parent) not in text
    card = json.loads(text)
    assert card["data"]["sources"] == [{"name": tiny_data.name}] and card["image_size"] == 48


def test_file_names_cannot_be_formulas_or_forge_lines(tiny_run, tiny_data, tmp_path, monkeypatch):
    from fakedetect.predict import predict_paths, write_predictions
    from fakedetect.run import load_run

    folder = tmp_path / "in"
    folder.mkdir()
    good = next((tiny_data / "fake").iterdir()).read_bytes()
    names = ["=HYPERLINK(\"http:x\",\"y\").jpg", "+1.jpg", "a\nforged,row.jpg", "plain.jpg"]
    for n in names:
        (folder / n).write_bytes(good)
    monkeypatch.chdir(folder)  # `fakedetect predict RUN .`: the paths are the bare file names
    res = predict_paths(load_run(tiny_run), ["."])
    write_predictions(res, tmp_path / "p.csv", 0.5)
    rows = list(csv.DictReader(open(tmp_path / "p.csv", newline="")))
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert len(rows) == 4 and len(lines) == 5  # the newline in a name forged no line
    assert sorted(r["path"] for r in rows) == sorted(["'=HYPERLINK(\"http:x\",\"y\").jpg", "'+1.jpg",
                                                      "a\\x0aforged,row.jpg", "plain.jpg"])
    assert safe_cell("-2+3") == "'-2+3" and safe_cell("a\tb\r\n") == "a\\x09b\\x0d\\x0a"


def test_skipped_txt_keeps_one_line_per_file(tmp_path):
    from fakedetect.atomic import write_skipped

    write_skipped(tmp_path / "skipped.txt", [("x\ny.jpg", "not an image"), ("@a.jpg", "empty file")])
    lines = (tmp_path / "skipped.txt").read_text().splitlines()
    assert lines == ["x\\x0ay.jpg\tnot an image", "'@a.jpg\tempty file"]


def test_umask_is_read_without_being_changed(monkeypatch):
    expected = os.umask(0o027)
    os.umask(expected)

    def no(_):
        raise AssertionError("os.umask called: it changes the umask of every thread for a moment")

    monkeypatch.setattr(os, "umask", no)
    assert current_umask() == expected


def test_check_budget_bounds_the_bytes_held_at_once():
    budget, held, peak, lock = _ByteBudget(100), [0], [0], threading.Lock()

    def work(n):
        budget.take(n)
        with lock:
            held[0] += n
            peak[0] = max(peak[0], held[0])
        time.sleep(0.02)
        with lock:
            held[0] -= n
        budget.give(n)

    threads = [threading.Thread(target=work, args=(n,)) for n in (60, 60, 30, 250, 10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert not any(t.is_alive() for t in threads)
    assert peak[0] == 250  # the oversized claim ran alone; nothing else ever pushed past 100


def test_public_card_names_a_weights_file_and_sources_without_paths():
    from fakedetect.card import ModelCard

    card = ModelCard(backbone="efficientnet-lite0", weights="/home/alice/w/lite0.pth", image_size=96,
                     data={"data_root": "/srv/data/faces", "val_source": "10% of /srv/data/faces/train",
                           "spec": [{"path": "/srv/data/faces", "name": "faces"}]},
                     domain={"sources": ["/srv/data/faces"]})
    text = json.dumps(card.public_dict())
    assert "/home/alice" not in text and "/srv/data" not in text, text
    d = card.public_dict()
    assert d["weights"] == "lite0.pth" and d["data"]["sources"] == [{"name": "faces"}]
    assert d["domain"]["sources"] == ["faces"] and ModelCard(weights="imagenet").public_dict()["weights"] == "imagenet"


def test_no_host_header_and_allowed_entries_written_like_headers():
    assert host_allowed("", ["localhost"])  # HTTP/1.0 health checks send none; a browser always does
    assert host_allowed("lab.example.org:8000", ["LAB.example.org.", "x:80"])
    assert host_allowed("x", ["x:80"]) and not host_allowed("y", ["x:80"])


def test_c1_controls_and_unicode_line_breaks_are_escaped():
    assert safe_cell("a\x85b\u2028c\x9b") == "a\\x85b\\x2028c\\x9b"
    assert "".join(safe_cell("a\x85b\u2028c").splitlines()) == safe_cell("a\x85b\u2028c")


def test_an_apng_goes_to_tensorflow_which_reads_its_first_image():
    buf = io.BytesIO()
    a, b = Image.new("RGB", (20, 20), (255, 0, 0)), Image.new("RGB", (20, 20), (0, 255, 0))
    a.save(buf, "PNG", save_all=True, append_images=[b])
    info = check_bytes(buf.getvalue(), ImageInfo("x.png"))
    assert info.error is None and not info.animated and info.tf_decodable
