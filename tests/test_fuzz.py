"""Property-based uploads: whatever a client sends, the app answers 2xx or 4xx with a message, never 5xx."""

import io
import os
import resource

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from fakedetect.web import create_app

N_EXAMPLES = int(os.environ.get("FAKEDETECT_FUZZ_EXAMPLES", "120"))
TRIED = {"n": 0}


def _image_bytes(fmt: str, w: int, h: int, seed: int) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt)
    return buf.getvalue()


real_images = st.builds(_image_bytes, st.sampled_from(["JPEG", "PNG", "GIF", "BMP", "WEBP"]),
                        st.integers(1, 300), st.integers(1, 300), st.integers(0, 2**16))


@st.composite
def uploads(draw):
    kind = draw(st.sampled_from(["random", "truncated", "mutated", "image", "header"]))
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


@pytest.fixture(scope="module")
def client(tiny_run):
    return create_app(tiny_run, {"MAX_CONTENT_LENGTH": 2 * 1024 * 1024}).test_client()


@settings(max_examples=N_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(files=st.lists(st.tuples(uploads(), st.text(max_size=40),
                                st.sampled_from(["image/jpeg", "text/plain", "application/octet-stream", ""])),
                      min_size=0, max_size=4),
       field=st.sampled_from(["image", "image", "file"]))
def test_any_upload_gets_2xx_or_4xx_with_a_message(client, files, field):
    TRIED["n"] += 1
    data = {field: [(io.BytesIO(b), name, ctype or None) for b, name, ctype in files]}
    r = client.post("/api/v1/predict", data=data, content_type="multipart/form-data")
    assert r.status_code < 500, r.get_data(as_text=True)[:500]
    body = r.get_json()
    if r.status_code >= 400:
        assert body["error"]
    else:
        for res in body["results"]:
            assert 0 <= res["prob_fake"] <= 1 and abs(res["prob_fake"] + res["prob_real"] - 1) < 1e-9


def test_memory_stays_bounded_and_count_is_reported(client):
    # Runs after the property test in this module: the server process (this one) did not balloon.
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert rss_mb < 4000, rss_mb
    assert client.get("/healthz").status_code == 200
    print(f"fuzz: {TRIED['n']} upload requests tried; peak RSS {rss_mb:.0f} MB")
