"""Shared fixtures: a tiny generated dataset, bad files, the path of the shared real data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The CLI scores with --engine auto (ONNX Runtime here); the tests choose it where they test it (test_engine.py).
os.environ.setdefault("FAKEDETECT_ENGINE", "tensorflow")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _cache(tmp_path_factory):
    """Converted weights go to one cache per test session unless the developer set one."""
    if "FAKEDETECT_CACHE" not in os.environ:
        os.environ["FAKEDETECT_CACHE"] = str(tmp_path_factory.mktemp("fdcache"))


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    from fakedetect.data.synthetic import make_synthetic_dataset

    return make_synthetic_dataset(tmp_path_factory.mktemp("tiny") / "data", n_per_class=12, size=48)


def write_bad_files(folder: Path) -> dict[str, str]:
    """Writes one file of each kind of bad input into ``folder``; returns name -> expected reason fragment."""
    import io
    import struct
    import zlib

    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_text("this is text, not an image")
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 10, 10)).save(buf, "JPEG")
    (folder / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    # A PNG whose header claims 100000 x 100000 pixels: must be refused without decoding it.
    ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 4096))
           + chunk(b"IEND", b""))
    (folder / "bomb.png").write_bytes(png)
    return {"empty.jpg": "empty", "notes.jpg": "not an image", "truncated.jpg": "corrupt",
            "bomb.png": "too large"}


def tf_rejected_jpeg() -> bytes:
    """A JPEG with a few hundred random bytes before its end marker: Pillow decodes it, TensorFlow refuses it
    (found by the upload fuzzer; the web app once answered 500 to it)."""
    import io

    import numpy as np
    import tensorflow as tf
    from PIL import Image

    from fakedetect.data.checks import ImageInfo, check_bytes

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(buf, "JPEG")
    good = buf.getvalue()
    for seed in range(500):
        rng = np.random.default_rng(seed)
        bad = good[:-2] + rng.integers(0, 256, int(rng.integers(100, 500)), dtype=np.uint8).tobytes() + b"\xff\xd9"
        if check_bytes(bad, ImageInfo("x")).error is None:
            try:
                tf.io.decode_image(bad, channels=3, expand_animations=False)
            except tf.errors.InvalidArgumentError:
                return bad
    raise AssertionError("no JPEG that Pillow accepts and TensorFlow refuses was found")


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "cifake-train.tar.gz").exists():
        pytest.skip(f"real data not found at {SHARED_DATA} (the project's ../shared/data)")
    return SHARED_DATA


TINY_TRAIN = {"backbone": "efficientnet-lite0", "image_size": 48, "epochs_frozen": 1, "epochs_finetune": 1,
              "batch_size": 8, "val_fraction": 0.25}


@pytest.fixture(scope="session")
def tiny_run(tiny_data, tmp_path_factory) -> Path:
    """A real (tiny) trained run: EfficientNet-Lite0 with ImageNet weights at 48 px, 1 + 1 epochs."""
    from fakedetect.config import load_config
    from fakedetect.training import train

    out = tmp_path_factory.mktemp("runs") / "tiny"
    train(tiny_data, load_config(None, TINY_TRAIN), out)
    return out


@pytest.fixture(scope="session")
def calibrated_run(tiny_run, tmp_path_factory) -> Path:
    """The tiny run with a temperature of 2.5 and a threshold of 0.4 (its validation is too small to fit them),
    so that a test can tell calibrated outputs, and the run's threshold, from raw ones."""
    import json
    import shutil

    out = tmp_path_factory.mktemp("runs") / "calibrated"
    shutil.copytree(tiny_run, out)
    card = json.loads((out / "model.json").read_text())
    card["calibration"] = {"method": "set by the tests", "temperature": 2.5}
    card["threshold"] = 0.4
    (out / "model.json").write_text(json.dumps(card))
    return out
