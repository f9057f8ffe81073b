"""The web app's preprocessing without TensorFlow (fakedetect.pixels) against TensorFlow's, pixel for pixel."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from fakedetect import pixels
from fakedetect.data.checks import rgb_pixels
from fakedetect.data.pipeline import decode_bytes, frame
from fakedetect.data.transforms import downscale, downscale_framed, jpeg_reencode
from fakedetect.framing import Framing

rng = np.random.default_rng(0)
IMG = rng.integers(0, 256, (70, 90, 3), dtype=np.uint8)


@pytest.mark.parametrize("size", [(48, 48), (128, 128), (35, 200), (70, 90), (300, 17)])
@pytest.mark.parametrize("antialias", [True, False])
def test_resize_is_tensorflows(size, antialias):
    want = tf.image.resize(tf.cast(IMG, tf.float32), size, antialias=antialias).numpy()
    assert np.abs(pixels.resize(IMG, *size, antialias=antialias) - want).max() < 1e-4  # float32 rounding


@pytest.mark.parametrize("shape", [(2, 400_000, 3), (400_000, 2, 3)])
def test_a_thin_image_is_resized_in_bounded_memory(shape):
    """A thin upload (its long side far beyond the model's input) is resized as TensorFlow resizes it without a
    float array of its long side times the input size, nor dense weights of that size: the numpy engine once
    needed 1.2 GB for a 2 x 1,000,000 image (a 2 x 32,000,000 one, within the pixel limit, would not fit at all)."""
    import tracemalloc

    img = rng.integers(0, 256, shape, dtype=np.uint8)
    want = tf.image.resize(tf.cast(img, tf.float32), (48, 48), antialias=True).numpy()
    tracemalloc.start()
    try:
        got = pixels.frame(img, Framing(48, "resize"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.abs(got - want).max() < 1e-2  # sums of ~17,000 float32 terms a pixel, in another order than TensorFlow
    assert peak < 64 * 2**20, f"{peak / 2**20:.0f} MB"  # the old order: 230 MB of rows and 77 MB of weights


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P"])
def test_the_checks_decoded_pixels_are_the_decoders(mode):
    """An upload checked for the ONNX Runtime engine keeps the pixels its check decoded (one decode, not two):
    the same pixels as decoding it again, and none kept past the budget."""
    from fakedetect.web.service import check_upload

    buf = io.BytesIO()
    Image.fromarray(IMG).convert(mode).save(buf, "PNG")
    data = buf.getvalue()
    kept = check_upload(data, "x.png", keep_pixels=IMG.shape[0] * IMG.shape[1]).pixels
    assert kept is not None and kept.dtype == np.uint8
    assert np.array_equal(kept, rgb_pixels(io.BytesIO(data)))
    assert check_upload(data, "x.png", keep_pixels=IMG.shape[0] * IMG.shape[1] - 1).pixels is None
    assert check_upload(data, "x.png").pixels is None


@pytest.mark.parametrize("fr", [Framing(48, "resize"), Framing(32, "crop", 5, "mean"), Framing(32, "crop", 9, "max"),
                                Framing(96, "crop", 5, "mean")])  # 96: the image is mirrored out first
def test_frame_is_the_pipelines(fr):
    want = frame(tf.constant(IMG), fr).numpy()
    got = pixels.frame(IMG, fr)
    assert got.shape == want.shape and got.dtype == np.float32
    assert np.abs(got - want).max() < 1e-4


def _encoded(fmt: str, img=IMG) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_decoding_is_tensorflows(fmt):
    data = _encoded(fmt)
    np.testing.assert_array_equal(rgb_pixels(io.BytesIO(data)), decode_bytes(tf.constant(data)).numpy())


def test_the_variants_are_tensorflows():
    diff = np.abs(pixels.downscale(0.75)(IMG).astype(int) - downscale(0.75)(tf.constant(IMG)).numpy())
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3  # rounding to uint8 at a float32 tie, now and then
    ours, theirs = pixels.jpeg_reencode(90)(IMG), jpeg_reencode(90)(tf.constant(IMG)).numpy()
    assert np.abs(ours.astype(int) - theirs).max() <= 1  # two libjpeg encoders, one accurate decoder


@pytest.mark.parametrize("shape,size", [((70, 90), 48), ((300, 17), 32), ((768, 1024), 128), ((40, 30), 64)])
def test_the_framed_downscale_variant_is_tensorflows(shape, size):
    """Resize mode's downscale variant goes to the model's input in one product: TensorFlow's three resizes
    (shrink, back, frame) within float32 rounding; and within half a grey level of the variant rounded to 8 bits
    and then framed (what it replaces), a twentieth on average when the frame shrinks the image 4x or more."""
    img = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    got = pixels.downscale_framed(0.75, size)(img)
    want = downscale_framed(0.75, size)(tf.constant(img)).numpy()
    assert got.shape == want.shape == (size, size, 3) and got.dtype == np.float32
    assert np.abs(got - want).max() < 1e-3
    rounded = pixels.frame(pixels.downscale(0.75)(img), Framing(size, "resize"))
    diff = np.abs(got - rounded)
    assert 0 < diff.max() <= 0.5 + 1e-3 and diff.mean() < (0.05 if min(shape) >= 4 * size else 0.25)


def test_the_api_on_onnxruntime_loads_no_tensorflow_until_an_explanation(calibrated_run, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("tf2onnx")
    from fakedetect.run import load_run

    run = load_run(calibrated_run, "onnxruntime")
    run.onnx.graph(False, run.framing)  # made here (TensorFlow), as `serve` makes it before its workers start
    (tmp_path / "up.jpg").write_bytes(_encoded("JPEG"))
    script = f"""
import io, sys
from fakedetect.web import create_app
client = create_app({str(calibrated_run)!r}, {{"TESTING": True, "ENGINE": "onnxruntime"}}).test_client()
data = open({str(tmp_path / "up.jpg")!r}, "rb").read()
r = client.post("/api/v1/predict", data={{"image": (io.BytesIO(data), "up.jpg")}})
res = r.json["results"][0]
print(r.status_code, res["engine"], len(res["variants"]), "tensorflow" in sys.modules, "keras" in sys.modules)
r = client.post("/api/v1/predict?explain=1", data={{"image": (io.BytesIO(data), "up.jpg")}})
print(r.status_code, r.json["results"][0]["heatmap_png"][:22], "tensorflow" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    lines = out.stdout.strip().splitlines()
    assert lines[-2:] == ["200 onnxruntime 2 False False", "200 data:image/png;base64, True"], out.stderr[-2000:]
