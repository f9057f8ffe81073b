"""Property-based uploads: whatever a client sends, the app answers 2xx or 4xx with a message, never 5xx.

Twice: in process through Flask's test client (fast, shrinks failures to a minimal example), and over real HTTP
against `fakedetect serve` (gunicorn), where the gunicorn worker's memory is measured before and after.
``fuzz_over_http`` also runs the 10,000-example benchmark (benchmarks/fuzz_uploads.py).
"""

from __future__ import annotations

import http.client
import io
import json
import os
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from PIL import Image

from fakedetect.web import create_app
from tests.test_upload_limits import proc_kb, reset_peak_rss, start_serve, worker_pid

N_EXAMPLES = int(os.environ.get("FAKEDETECT_FUZZ_EXAMPLES", "120"))
N_HTTP_EXAMPLES = int(os.environ.get("FAKEDETECT_FUZZ_HTTP_EXAMPLES", "80"))
N_SLOW_HTTP_EXAMPLES = int(os.environ.get("FAKEDETECT_FUZZ_SLOW_EXAMPLES", "10000"))
HTTP_MAX_UPLOAD_MB = 2


def _image_bytes(fmt: str, w: int, h: int, seed: int) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt)
    return buf.getvalue()


real_images = st.builds(_image_bytes, st.sampled_from(["JPEG", "PNG", "GIF", "BMP", "WEBP"]),
                        st.integers(1, 300), st.integers(1, 300), st.integers(0, 2**16))


def animated_bytes(fmt: str, first: tuple[int, int], second: tuple[int, int], frames: int) -> bytes:
    """A GIF or WebP of ``frames`` frames: the first ``first`` pixels, the others ``second`` (a GIF's later frames
    may be far larger than its first: TensorFlow once decoded them all at the largest size)."""
    mode = "P" if fmt == "GIF" else "RGB"
    if fmt == "WEBP":
        second = first  # WebP frames share one canvas
    ims = [Image.new(mode, first if i == 0 else second, i + 1 if mode == "P" else (40 * i % 256, 90, 160))
           for i in range(frames)]
    buf = io.BytesIO()
    ims[0].save(buf, fmt, save_all=True, append_images=ims[1:])
    return buf.getvalue()


def huge_png(w: int, h: int) -> bytes:
    """A legal PNG of up to 64 megapixels that compresses to a few hundred KB (one flat colour)."""
    buf = io.BytesIO()
    Image.new("L", (w, h), 128).save(buf, "PNG", compress_level=9)
    return buf.getvalue()


animations = st.builds(animated_bytes, st.sampled_from(["GIF", "WEBP"]),
                       st.tuples(st.integers(1, 96), st.integers(1, 96)),
                       st.tuples(st.integers(1, 4000), st.integers(1, 4000)), st.integers(2, 4))
huge_pngs = st.builds(huge_png, st.integers(1000, 8000), st.integers(1000, 8000))


@st.composite
def uploads(draw):
    # Animations and huge-but-legal PNGs (issue 22) are drawn about once in 12 each: a 64-megapixel PNG costs the
    # server a second or two.
    kind = draw(st.sampled_from(["random", "truncated", "mutated", "image", "header"] * 2 + ["animated", "huge"]))
    if kind == "animated":
        return draw(animations)
    if kind == "huge":
        return draw(huge_pngs)
    if kind == "random":
        return draw(st.binary(max_size=4096))
    data = draw(real_images)
    if kind == "truncated":
        return data[: draw(st.integers(0, len(data)))]
    if kind == "mutated":
        b = bytearray(data)
        for _ in range(draw(st.integers(1, 20))):
            b[draw(st.integers(0, len(b) - 1))] = draw(st.integers(0, 255))
        return bytes(b)
    if kind == "header":  # a valid PNG header with absurd declared dimensions
        import struct
        import zlib

        w, h = draw(st.integers(1, 2**31 - 1)), draw(st.integers(1, 2**31 - 1))
        ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
        body = b"IHDR" + ihdr
        return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + body + struct.pack(">I", zlib.crc32(body))
    return data


FILES = st.lists(st.tuples(uploads(), st.text(max_size=40),
                           st.sampled_from(["image/jpeg", "text/plain", "application/octet-stream", ""])),
                 min_size=0, max_size=4)
FIELDS = st.sampled_from(["image", "image", "file"])


def check_answer(status: int, body) -> str | None:
    """What is wrong with an answer to a fuzzed upload (None: nothing)."""
    if status >= 500:
        return f"{status}: {str(body)[:300]}"
    if not isinstance(body, dict):
        return f"{status}: not JSON: {str(body)[:300]}"
    if status >= 400:
        return None if body.get("error") else f"{status} without a message: {str(body)[:300]}"
    for res in body.get("results", []):
        if not (0 <= res["prob_fake"] <= 1 and abs(res["prob_fake"] + res["prob_real"] - 1) < 1e-9):
            return f"{status}: bad probabilities {res}"
    return None


# --- in process: Flask's test client ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def client(tiny_run):
    return create_app(tiny_run, {"MAX_CONTENT_LENGTH": HTTP_MAX_UPLOAD_MB * 1024 * 1024}).test_client()


@settings(max_examples=N_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(files=FILES, field=FIELDS)
def test_any_upload_gets_2xx_or_4xx_with_a_message(client, files, field):
    data = {field: [(io.BytesIO(b), name, ctype or None) for b, name, ctype in files]}
    r = client.post("/api/v1/predict", data=data, content_type="multipart/form-data")
    assert r.status_code < 500, r.get_data(as_text=True)[:500]
    body = r.get_json()
    if r.status_code >= 400:
        assert body["error"]
    else:
        for res in body["results"]:
            assert 0 <= res["prob_fake"] <= 1 and abs(res["prob_fake"] + res["prob_real"] - 1) < 1e-9


# --- over real HTTP: gunicorn started as `fakedetect serve` starts it ----------------------------------------------

def multipart(field_name: str, files: list[tuple[bytes, str, str]]) -> tuple[bytes, str]:
    """A multipart/form-data body as a browser writes it (quotes and line breaks in names percent-encoded)."""
    boundary = "fuzz" + uuid.uuid4().hex
    out = []
    for data, name, ctype in files:
        name = name.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{field_name}"; filename="{name}"\r\n'
        if ctype:
            head += f"Content-Type: {ctype}\r\n"
        out.append(head.encode("utf-8", "replace") + b"\r\n" + data + b"\r\n")
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out), f"multipart/form-data; boundary={boundary}"


def post_multipart(url: str, field_name: str, files) -> tuple[int, object]:
    body, ctype = multipart(field_name, files)
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
    try:
        conn.request("POST", "/api/v1/predict", body, {"Content-Type": ctype})
        r = conn.getresponse()
        raw = r.read()
    finally:
        conn.close()
    try:
        return r.status, json.loads(raw)
    except ValueError:
        return r.status, raw[:300]


@dataclass
class FuzzFigures:
    requests: int = 0
    by_class: dict = field(default_factory=lambda: {"2xx": 0, "4xx": 0, "5xx": 0, "other": 0})
    problems: list = field(default_factory=list)  # what was wrong, with the request that caused it
    rss_before_mb: float = 0.0
    rss_after_mb: float = 0.0
    peak_rss_mb: float = 0.0
    seconds: float = 0.0
    same_worker: bool = True
    worker_timeouts: int = 0  # "WORKER TIMEOUT" lines in gunicorn's log
    worker_boots: int = 0  # "Booting worker" lines in gunicorn's log (1: never re-booted)

    def summary(self) -> str:
        c = self.by_class
        return (f"{self.requests} requests over HTTP: {c['2xx']} x 2xx, {c['4xx']} x 4xx, {c['5xx']} x 5xx; "
                f"worker RSS {self.rss_before_mb:.0f} MB before, {self.rss_after_mb:.0f} MB after "
                f"(peak {self.peak_rss_mb:.0f} MB); {self.seconds:.0f} s; {self.worker_timeouts} worker timeouts, "
                f"{self.worker_boots} worker boot(s)")


def fuzz_over_http(served, n_examples: int, seed: int | None = None, warm_up: list[bytes] | None = None
                   ) -> FuzzFigures:
    """Posts ``n_examples`` fuzzed multipart uploads to a running `fakedetect serve` (one worker) and counts
    the answers; measures the worker's RSS after the warm-up requests (one per upload in ``warm_up``: the
    largest legal image among them, so the allocator has seen the largest working set) and at the end.

    Nothing is asserted inside the loop (Hypothesis would then shrink, sending many more requests): each
    problem is recorded, and only generation runs, so exactly ``n_examples`` requests are sent.
    """
    figures = FuzzFigures()
    worker = worker_pid(served.proc.pid)
    for data in warm_up or []:  # the model's first call traces its inference function: not a leak
        post_multipart(served.url, "image", [(data, "warm", "")])
    figures.rss_before_mb = proc_kb(worker) / 1024
    reset_peak_rss(worker)

    @settings(max_examples=n_examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(files=FILES, field_name=FIELDS)
    def one(files, field_name):
        try:
            status, body = post_multipart(served.url, field_name, files)
        except OSError as e:
            status, body = 0, f"{type(e).__name__}: {e}"
        figures.requests += 1
        cls = f"{status // 100}xx" if 200 <= status < 600 and status // 100 in (2, 4, 5) else "other"
        figures.by_class[cls] += 1
        problem = check_answer(status, body) if status else f"no answer: {body}"
        if problem:
            sizes = [(len(d), n, c) for d, n, c in files]
            figures.problems.append(f"{problem} <- field {field_name!r}, files (bytes, name, type) {sizes}")

    if seed is not None:
        one = hypothesis_seed(seed)(one)
    t0 = time.time()
    one()
    figures.seconds = time.time() - t0
    figures.rss_after_mb = proc_kb(worker) / 1024
    figures.peak_rss_mb = proc_kb(worker, "VmHWM") / 1024
    figures.same_worker = served.proc.poll() is None and worker_pid(served.proc.pid) == worker
    log = served.log.read_text(errors="replace")
    figures.worker_timeouts, figures.worker_boots = log.count("WORKER TIMEOUT"), log.count("Booting worker")
    return figures


@pytest.fixture(scope="module")
def served(tiny_run, tmp_path_factory):
    s = start_serve(tiny_run, max_upload_mb=HTTP_MAX_UPLOAD_MB, log=tmp_path_factory.mktemp("serve") / "server.log")
    yield s
    s.stop()


def warm_up_uploads(first: bytes) -> list[bytes]:
    """What the worker sees before its memory is first measured: an ordinary image, the largest legal PNG and an
    animation whose later frames are large."""
    return [first, huge_png(8000, 8000), animated_bytes("GIF", (64, 64), (4000, 4000), 3)]


def _warm_up_image(tiny_data) -> list[bytes]:
    return warm_up_uploads(next((tiny_data / "real").glob("*.jpg")).read_bytes())


def test_fuzzed_uploads_over_http_and_the_server_memory(served, tiny_data):
    f = fuzz_over_http(served, N_HTTP_EXAMPLES, seed=0, warm_up=_warm_up_image(tiny_data))
    print("fuzz (fast):", f.summary())
    assert f.requests == N_HTTP_EXAMPLES
    assert f.by_class["5xx"] == 0 and not f.problems, (f.problems[:5], served.log_tail())
    assert f.same_worker, served.log_tail()  # the worker was neither killed nor restarted
    assert f.by_class["other"] == 0 and f.worker_timeouts == 0 and f.worker_boots == 1, f.summary()
    # The same requests again. Each carries up to 4 uploads of up to ~270 KB: a worker keeping them would grow by
    # tens of MB a pass. The first pass may grow the allocator's pools for image sizes it had not seen (how much
    # depends on the examples, which Hypothesis also draws from the project's string literals); the second sees
    # the same sizes and must not grow.
    again = fuzz_over_http(served, N_HTTP_EXAMPLES, seed=0)
    print("fuzz (fast), same requests again:", again.summary())
    assert again.by_class == f.by_class and again.same_worker and not again.problems, again.summary()
    assert again.rss_after_mb - f.rss_after_mb < 32, again.summary()
    assert f.rss_after_mb - f.rss_before_mb < 256, f.summary()


@pytest.fixture(scope="module")
def served_default(tiny_run, tmp_path_factory):
    """``fakedetect serve`` on its default engine (auto: ONNX Runtime), as a user runs it; the test suite otherwise
    serves on TensorFlow (conftest)."""
    s = start_serve(tiny_run, max_upload_mb=HTTP_MAX_UPLOAD_MB, log=tmp_path_factory.mktemp("serve") / "server.log",
                    FAKEDETECT_ENGINE="auto")
    yield s
    s.stop()


@pytest.mark.slow
def test_10000_fuzzed_uploads_over_http(served_default, tiny_data):
    """Issue 22's run, on serve's default engine. (On TensorFlow, `--engine tensorflow`, the worker grew 19% with
    seed 1: TensorFlow's own memory, which the heap trim does not reach; benchmarks/RESULTS.md.)"""
    served = served_default
    f = fuzz_over_http(served, N_SLOW_HTTP_EXAMPLES, seed=1, warm_up=_warm_up_image(tiny_data))
    print("fuzz (slow):", f.summary())
    assert f.requests == N_SLOW_HTTP_EXAMPLES
    assert f.by_class["5xx"] == 0 and not f.problems, (f.problems[:5], served.log_tail())
    assert f.same_worker, served.log_tail()
    assert f.by_class["other"] == 0 and f.worker_timeouts == 0 and f.worker_boots == 1, f.summary()
    # issue 22's goal: within +10% of the reading after the warm-up (the worker's heap trim, fakedetect.web.memory)
    assert f.rss_after_mb <= 1.10 * f.rss_before_mb, f.summary()
