"""Checking image files and bytes before anything trains on or scores them: never raises for a bad file."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import stat
import threading
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from fakedetect.progress import Progress

log = logging.getLogger(__name__)

# Formats the tf.data pipeline decodes natively; anything else Pillow reads is decoded by Pillow there.
TF_FORMATS = {"JPEG", "MPO", "PNG", "GIF", "WEBP"}

ACCEPTED_FORMATS = TF_FORMATS | {"BMP", "TIFF", "PPM"}
# The Pillow plugins that may parse untrusted bytes (an MPO file is opened by the JPEG plugin).
OPEN_FORMATS = sorted(ACCEPTED_FORMATS - {"MPO"})

MAX_PIXELS = 64_000_000  # a larger image is refused unread (decompression-bomb guard)

MAX_FILE_BYTES = 512_000_000

# Bytes of files held at once by the checks of `check_images` (one file larger than this is still read, alone).
# With Pillow's decoded copy (at most MAX_PIXELS x 4 bytes a thread) this bounds the memory of the checks.
CHECK_BYTES_IN_FLIGHT = 1 << 30

TF_REJECTED = "corrupt image: TensorFlow's decoder rejected it"


@dataclass
class ImageInfo:
    """What a check of one file found. ``error`` is None for a usable image."""
    path: str
    error: str | None = None
    format: str | None = None
    width: int = 0
    height: int = 0
    mode: str | None = None
    nbytes: int = 0
    sha1: str | None = None
    # An animated GIF or WebP: its first frame is used, decoded by Pillow. TensorFlow's GIF decoder reads every
    # frame and sizes its output to the largest one, which Pillow's size check of the first frame does not see.
    animated: bool = False

    @property
    def tf_decodable(self) -> bool:
        return self.format in TF_FORMATS and self.mode != "CMYK" and not self.animated


def rgb_pixels(source):
    """The image in ``source`` (a path or a file object) as a uint8 H x W x 3 array, opened by
    :func:`open_image`: the first frame of an animation, alpha dropped, grey made RGB."""
    with open_image(source) as im:
        return rgb_array(im)


def rgb_array(im):
    """An open Pillow image's pixels as :func:`rgb_pixels` gives them: uint8 H x W x 3 (alpha dropped, grey made
    RGB)."""
    import numpy as np

    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def open_image(source):
    """Pillow's ``Image.open`` limited to the accepted formats: no other plugin's parser sees untrusted bytes."""
    from PIL import Image

    return Image.open(source, formats=OPEN_FORMATS)


class _ByteBudget:
    """At most ``limit`` bytes held at once by the threads that take from it (a larger claim waits to be alone)."""
    def __init__(self, limit: int):
        self.limit, self.used, self._cond = limit, 0, threading.Condition()

    def take(self, n: int) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self.used == 0 or self.used + n <= self.limit)
            self.used += n

    def give(self, n: int) -> None:
        with self._cond:
            self.used -= n
            self._cond.notify_all()


def check_image(path: str | Path, hash_bytes: bool = False, tf_verify: bool = False,
                budget: _ByteBudget | None = None) -> ImageInfo:
    """Opens and fully decodes one file with Pillow; never raises for a bad file.

    ``budget``: the bytes of the file are held only once it grants them (see :func:`check_images`).
    """
    info = ImageInfo(str(path))
    info.error, size = stat_error(path)
    if info.error is not None:
        return info
    if budget is not None:
        budget.take(size)
    try:
        data = Path(path).read_bytes()
        if hash_bytes:
            info.sha1 = hashlib.sha1(data).hexdigest()
        return check_bytes(data, info, tf_verify=tf_verify)
    except OSError as e:
        info.error = f"cannot read: {e.strerror or e}"
        return info
    finally:
        if budget is not None:
            budget.give(size)


def stat_error(path: str | Path) -> tuple[str | None, int]:
    """(why a local file cannot be read as an image before reading it, or None; its size in bytes)."""
    try:
        st = os.stat(path)  # follows symlinks; a loop or a dangling link raises here
    except OSError as e:
        return f"cannot read: {e.strerror or e}", 0
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file", st.st_size  # a FIFO would block a read forever
    return size_error(st.st_size), st.st_size


def size_error(size: int) -> str | None:
    """Why a file of ``size`` bytes is not read (too large), or None."""
    return f"file too large ({size / 1e6:.0f} MB)" if size > MAX_FILE_BYTES else None


def check_bytes(data: bytes, info: ImageInfo, on_open: Callable | None = None, tf_verify: bool = False,
                on_loaded: Callable | None = None) -> ImageInfo:
    """Fills ``info`` from encoded image bytes, fully decoding them with Pillow; never raises for bad bytes.

    Args:
        on_open: called with the open Pillow image once its format and size are accepted (to read more facts).
        on_loaded: called with the decoded Pillow image once Pillow's checks passed and its pixels are loaded
            (before TensorFlow's decode of ``tf_verify``).
        tf_verify: also decode with TensorFlow's decoder the files that the pipeline will decode with it: some
            damaged JPEGs that Pillow accepts (garbage before the end marker) are refused by TensorFlow.
    """
    from PIL import Image

    info.nbytes = len(data)
    if not data:
        info.error = "empty file"
        return info
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with open_image(io.BytesIO(data)) as im:
                info.format, info.mode = im.format, im.mode
                info.width, info.height = im.size
                # GIF and WebP only: TensorFlow reads just the first image of an APNG or an MPO (a phone photo
                # with an embedded second image), as it should.
                info.animated = info.format in ("GIF", "WEBP") and bool(getattr(im, "is_animated", False))
                if info.format not in ACCEPTED_FORMATS:
                    info.error = f"unsupported image format {info.format}"
                elif info.width * info.height > MAX_PIXELS:
                    info.error = f"image too large ({info.width}x{info.height} pixels)"
                else:
                    if on_open is not None:
                        on_open(im)
                    im.load()
                    if on_loaded is not None:
                        on_loaded(im)
    except Image.DecompressionBombError as e:
        info.error = f"image too large: {e}"
    except Exception as e:  # noqa: BLE001 - any decoder failure means an unusable file
        msg = str(e).split("\n")[0] or type(e).__name__
        info.error = "not an image" if "cannot identify image file" in msg else f"corrupt image: {msg}"
    if tf_verify and info.error is None and info.tf_decodable:
        import tensorflow as tf

        try:
            tf.io.decode_image(data, channels=3, expand_animations=False)
        except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as e:
            info.error = tf_rejected(e)
    return info


def tf_rejected(e) -> str:
    """The reason given for a file TensorFlow's decoder refused: :data:`TF_REJECTED` and the decoder's first
    sentence, without TensorFlow's node and op names (the same whichever decoding op refused it)."""
    msg = re.sub(r"^\{\{[^}]*\}\}\s*", "", e.message or type(e).__name__)
    msg = re.sub(r"\s*\[Op:\w+\]\s*$", "", msg).split(". ")[0].strip()
    return f"{TF_REJECTED} ({msg})" if msg else TF_REJECTED


def check_images(paths: Iterable[str | Path], hash_bytes: bool = False, workers: int | None = None,
                 tf_verify: bool = False, what: str | None = None) -> list[ImageInfo]:
    """Checks many files in threads (Pillow's decoders release the GIL); keeps the input order.

    Memory is bounded: the threads hold at most CHECK_BYTES_IN_FLIGHT bytes of files at once (a larger file is
    read alone), and each holds at most one decoded image of MAX_PIXELS.
    ``what`` names the files in progress messages ("train files"); None: no progress is reported.
    """
    paths = list(paths)
    workers = workers or min(8, (os.cpu_count() or 1) * 2)
    budget = _ByteBudget(CHECK_BYTES_IN_FLIGHT)
    out: list[ImageInfo] = []
    with ThreadPoolExecutor(workers) as ex, Progress(f"checked {what}", len(paths) if what else 0, log) as progress:
        for i, info in enumerate(ex.map(lambda p: check_image(p, hash_bytes, tf_verify, budget), paths,
                                        chunksize=64)):
            out.append(info)
            progress.update(i + 1)
    if what:
        log.info(f"  checked {len(paths)} {what}")
    return out
