"""The real thing: `fakedetect serve` under gunicorn, a real HTTP upload, and headless Chromium using the page."""

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from PIL import Image

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(tiny_run, **env_extra):
    port = _free_port()
    env = dict(os.environ, FAKEDETECT_MAX_UPLOAD_MB="1", **env_extra)
    proc = subprocess.Popen([sys.executable, "-m", "fakedetect", "serve", str(tiny_run), "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(url + "/healthz", timeout=2).status == 200:
                break
        except OSError:
            time.sleep(0.5)
        if proc.poll() is not None:
            raise RuntimeError(proc.stdout.read().decode())
    else:
        proc.kill()
        raise RuntimeError("server did not start in 90 s")
    return proc, url


@pytest.fixture(scope="module")
def server(tiny_run):
    proc, url = _start(tiny_run)
    yield url
    proc.terminate()
    proc.wait(20)


def _browser(p):
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium not installed (apt-get install chromium); .ci/run installs it")
    args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"]
    return p.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)


def _post(url: str, field_files: list[tuple[str, bytes]]):
    boundary = uuid.uuid4().hex
    body = b""
    for name, data in field_files:
        body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\n"
                 f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    req = urllib.request.Request(url, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _photo(tiny_data) -> bytes:
    return next((tiny_data / "real").glob("*.jpg")).read_bytes()


def test_gunicorn_serves_real_uploads_and_bad_ones(server, tiny_data):
    status, body = _post(server + "/api/v1/predict", [("face.jpg", _photo(tiny_data))])
    assert status == 200
    r = body["results"][0]
    assert abs(r["prob_fake"] + r["prob_real"] - 1) < 1e-9
    assert _post(server + "/api/v1/predict", [("x.jpg", b"not an image")])[0] == 400
    assert _post(server + "/api/v1/predict", [])[0] == 400
    for _ in range(5):  # over the 1 MB limit: the server reads the body away first, so urllib reads the 413
        status, body = _post(server + "/api/v1/predict", [("big.jpg", b"\0" * (2 * 1024 * 1024))])
        assert (status, body) == (413, {"error": "upload too large: the limit is 1 MB", "status": 413})
    assert urllib.request.urlopen(server + "/healthz").status == 200


def test_browser_upload_shows_probabilities_and_heatmap(server, tiny_data, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    img = tmp_path / "upload me.png"
    Image.open(io.BytesIO(_photo(tiny_data))).resize((320, 320)).save(img)
    with playwright.sync_playwright() as p:
        browser = _browser(p)
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.goto(server + "/")
        page.set_input_files("#file", str(img))
        page.wait_for_selector("#result:not([hidden])", timeout=60_000)
        fake = float(page.inner_text("#prob-fake").rstrip("%"))
        real = float(page.inner_text("#prob-real").rstrip("%"))
        assert abs(fake + real - 100) < 0.15
        # The page shows what the API answers for the same file.
        r = _post(server + "/api/v1/predict", [("upload me.png", img.read_bytes())])[1]["results"][0]
        assert abs(fake - 100 * r["prob_fake"]) <= 0.051
        assert page.inner_text("#verdict").strip() == (
            f"No reliable verdict (leans {r['label']})" if r["in_domain"] is False
            else f"Uncertain (leans {r['label']})" if r["uncertain"]
            else "Likely AI-generated" if r["label"] == "fake" else "Likely a real photograph")
        assert page.is_visible("#domain") == (r["in_domain"] is False)
        assert "upload me.png" in page.inner_text("#facts")
        assert page.get_attribute("#heatmap", "src") is None  # Grad-CAM only when asked for
        page.check("#showheat")
        page.wait_for_selector("#heatmap:not([hidden])", timeout=60_000)
        assert page.get_attribute("#heatmap", "src").startswith("data:image/png")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "web_prediction.png"), full_page=True)
        # A bad upload shows the server's message and the page keeps working.
        bad = tmp_path / "notes.jpg"
        bad.write_text("hello")
        page.set_input_files("#file", str(bad))
        page.wait_for_selector("#status.error", timeout=30_000)
        assert "not an image" in page.inner_text("#status")
        browser.close()
    assert (ARTIFACTS / "web_prediction.png").stat().st_size > 10_000


def test_browser_with_api_token_asks_for_it(tiny_run, tiny_data, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    proc, url = _start(tiny_run, FAKEDETECT_API_TOKEN="s3cret")
    img = tmp_path / "a.jpg"
    img.write_bytes(_photo(tiny_data))
    asked = []
    try:
        with playwright.sync_playwright() as p:
            browser = _browser(p)
            page = browser.new_page()
            page.on("dialog", lambda d: (asked.append(d.message), d.accept("s3cret")))
            page.goto(url + "/")
            page.set_input_files("#file", str(img))
            page.wait_for_selector("#result:not([hidden])", timeout=60_000)
            assert "%" in page.inner_text("#prob-fake")
            browser.close()
    finally:
        proc.terminate()
        proc.wait(20)
    assert asked and "token" in asked[0]


def test_browser_says_when_an_image_is_unlike_the_training_images(tiny_run, tiny_data, tmp_path):
    """The page's out-of-domain message, for certain: a copy of the run whose domain threshold nothing passes."""
    playwright = pytest.importorskip("playwright.sync_api")
    from fakedetect.domain import DomainModel
    from fakedetect.runfolder import DOMAIN_FILE

    run = tmp_path / "strict"
    shutil.copytree(tiny_run, run)
    domain = DomainModel.load(run / DOMAIN_FILE)
    domain.threshold = -1.0  # every distance is above it: every upload is "unlike the training images"
    domain.save(run / DOMAIN_FILE)
    proc, url = _start(run)
    img = tmp_path / "a.jpg"
    img.write_bytes(_photo(tiny_data))
    try:
        with playwright.sync_playwright() as p:
            browser = _browser(p)
            page = browser.new_page()
            page.goto(url + "/")
            assert "Trained on data (48 px; JPEG, PNG)" in page.inner_text("header")
            page.set_input_files("#file", str(img))
            page.wait_for_selector("#result:not([hidden])", timeout=60_000)
            assert page.is_visible("#domain")
            assert "unlike the images this model was trained on" in page.inner_text("#domain")
            assert page.inner_text("#verdict").strip().startswith("No reliable verdict (leans ")
            facts = page.inner_text("#facts")
            assert "like the training images" in facts and "no (distance" in facts
            browser.close()
    finally:
        proc.terminate()
        proc.wait(20)
