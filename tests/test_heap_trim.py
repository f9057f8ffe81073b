"""A serve worker hands freed heap memory back after requests that left it larger (fakedetect.web.memory)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from fakedetect.web import create_app, memory
from fakedetect.web.memory import HeapTrimmer

MB = 1 << 20


class FakeHeap:
    """Resident memory as the test sets it; a trim gives back what the test says is free."""
    def __init__(self, rss: int):
        self.rss, self.free, self.trims = rss, 0, 0

    def trim(self, pad: int) -> int:
        self.trims += 1
        self.rss -= self.free
        self.free = 0
        return 1


def test_trims_only_past_the_margin_and_then_measures_from_what_is_left():
    heap = FakeHeap(200 * MB)
    t = HeapTrimmer(trim=heap.trim, rss=lambda: heap.rss)
    margin = max(memory.SLACK_SHARE * 200 * MB, memory.MIN_SLACK_BYTES)
    heap.rss += int(margin) - MB  # grown, within the margin: no trim (a trim would cost the next request)
    t.after_request()
    assert heap.trims == 0
    heap.rss += 2 * MB
    heap.free = 20 * MB  # past it: trimmed, and the level is what is left after the trim
    t.after_request()
    assert heap.trims == 1 and t.level == heap.rss
    # memory that stays in use (TensorFlow loaded for an explanation) is not trimmed over and over
    heap.rss += 800 * MB
    t.after_request()
    t.after_request()
    t.after_request()
    assert heap.trims == 2 and t.level == heap.rss
    # the level follows memory down, so growth counts from the smallest size
    heap.rss -= 100 * MB
    t.after_request()
    assert t.level == heap.rss and heap.trims == 2


def test_nothing_without_glibc_or_proc(monkeypatch):
    monkeypatch.setattr(memory, "malloc_trim", lambda: None)  # another C library
    t = HeapTrimmer()
    assert t.trim is None and t.level is None
    t.after_request()  # no error, nothing to call
    heap = FakeHeap(100 * MB)
    t = HeapTrimmer(trim=heap.trim, rss=lambda: None)  # no /proc
    t.after_request()
    assert heap.trims == 0


def test_the_real_trim_and_resident_memory_are_found_here():
    assert memory.resident_bytes() > 10 * MB
    assert memory.malloc_trim() is not None  # glibc, as on every machine the project supports
    assert memory.malloc_trim()(0) in (0, 1)


def test_the_app_asks_after_every_answer_once_it_is_sent(tiny_run):
    app = create_app(tiny_run, {"TESTING": True})
    calls = []

    class Spy:
        def after_request(self):
            calls.append(1)

    app.extensions["fakedetect.heap"] = Spy()
    buf = io.BytesIO()
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(buf, "PNG")
    with app.test_client() as client:
        r = client.post("/api/v1/predict", data={"image": (io.BytesIO(buf.getvalue()), "a.png")})
        assert r.status_code == 200 and calls == []  # not before the answer is closed (sent, under gunicorn)
        r.close()
        assert calls == [1]
        r = client.get("/healthz")
        r.close()
        assert r.status_code == 200 and calls == [1, 1]


def test_a_large_upload_leaves_no_growth_behind(tiny_run):
    """Through the app on ONNX Runtime (serve's default): after a 16-megapixel upload and a run of ordinary ones,
    the process is not left holding the large one's memory (without the trims: +183 MB here, with them +10 MB)."""
    app = create_app(tiny_run, {"TESTING": True, "MAX_CONTENT_LENGTH": 64 * MB, "ENGINE": "onnxruntime"})
    side = 4000

    def png(w, h, seed):
        buf = io.BytesIO()
        Image.fromarray(np.full((h, w, 3), seed % 256, np.uint8)).save(buf, "PNG")
        return buf.getvalue()

    small = [png(300 + 37 * i, 200 + 23 * i, i) for i in range(12)]
    with app.test_client() as client:
        def post(data):
            r = client.post("/api/v1/predict", data={"image": (io.BytesIO(data), "x.png")})
            assert r.status_code == 200, r.json
            r.close()

        for d in small:
            post(d)
        before = memory.resident_bytes()
        post(png(side, side, 7))
        for d in small:
            post(d)
        after = memory.resident_bytes()
    assert app.extensions["fakedetect.heap"].trims >= 1
    # the margin of a ~2 GB test process is ~100 MB: a tighter bound than that
    assert after <= before + 64 * MB, f"{before / MB:.0f} -> {after / MB:.0f} MB"
