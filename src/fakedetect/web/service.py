"""What the web app does with one upload: check it, score it (and its mild variants), explain it."""

from __future__ import annotations

import base64
import io
import re
import threading
import time
from dataclasses import dataclass

import numpy as np

from fakedetect import pixels
from fakedetect.data.checks import ImageInfo, check_bytes, rgb_array, rgb_pixels
from fakedetect.data.transforms import downscale, downscale_framed, jpeg_reencode
from fakedetect.framing import crop_boxes
from fakedetect.models import BACKBONE_LAYER, OUTPUT_LAYER, POOL_LAYER
from fakedetect.run import Framed, Run

# The IJG standard luminance quantisation table (quality 50), in natural order.
_STD_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], dtype=np.float64)


# The mild variants are made from a copy of the upload at most this many pixels on its longer side (or the model's
# input size, if larger): a 64-megapixel upload is not re-encoded and resized at full size. Smaller uploads are
# used as they are; the image's own score always comes from the full image, as `predict` scores it.
VARIANT_MAX_SIDE = 1024


def variant_source(img, image_size: int):
    """The uint8 image the mild variants start from: ``img``, or a copy shrunk (with Pillow, in uint8: no float
    copy of a large image) to at most max(VARIANT_MAX_SIDE, 2 x image_size) pixels on its longer side."""
    from PIL import Image

    side = max(VARIANT_MAX_SIDE, 2 * image_size)
    arr = np.asarray(img)
    if max(arr.shape[:2]) <= side:
        return img
    im = Image.fromarray(arr)
    im.thumbnail((side, side), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(im)


# Resize mode: the downscale variant is composed with the framing (not rounded to 8 bits in between) for images at
# least this many times the model's input on their shorter side (see mild_variants).
COMPOSE_MIN_SHRINK = 4


def mild_variants(numpy: bool = False, size: int | None = None) -> dict:
    """Name -> transform of the mild variants an upload is re-scored under (a verdict that flips is uncertain);
    ``numpy``: the same without TensorFlow (:mod:`fakedetect.pixels`), for the ONNX Runtime engine.

    ``size``: resize mode's input size. The downscale variant of a variant source (the upload, or its copy of at
    most VARIANT_MAX_SIDE px: see variant_source) at least COMPOSE_MIN_SHRINK times that on its shorter side
    (e.g. a 1024x768 copy for a 128 px model; never for inputs of 256 px or more) then goes to the model's input
    in one go (a :class:`fakedetect.run.Framed` view: shrunk, resized back and framed without rounding to 8 bits
    in between), on ONNX Runtime one product instead of two resizes at the source's size; the framing's shrink
    averages the rounding away there. Where it would not (smaller sources), and without ``size`` (crop mode: the
    variants of S px crops), the variant is a uint8 image, rounded as before."""
    jpeg = pixels.jpeg_reencode(90) if numpy else jpeg_reencode(90)
    rounded = pixels.downscale(0.75) if numpy else downscale(0.75)
    if size is None:
        return {"re-encoded as JPEG 90": jpeg, "resized to 75% and back": rounded}
    composed = pixels.downscale_framed(0.75, size) if numpy else downscale_framed(0.75, size)

    def down(img):
        return Framed(composed(img)) if min(img.shape[:2]) >= COMPOSE_MIN_SHRINK * size else rounded(img)
    return {"re-encoded as JPEG 90": jpeg, "resized to 75% and back": down}


class UploadError(ValueError):
    """An upload that is not a usable image; the message names the problem."""


# A request's uploads keep the pixels their checks decoded, up to this many pixels in all (when the scorer decodes
# with Pillow), so that an image is not decoded twice; the others are decoded again when scored, one at a time:
# a request of many large files does not hold them all decoded.
KEEP_DECODED_PIXELS = 4_000_000


@dataclass
class Checked:
    data: bytes
    facts: dict
    pillow_only: bool
    filename: str = ""
    pixels: np.ndarray | None = None  # the decoded RGB pixels, when kept (see check_upload)


def _label(filename: str) -> str:
    """How messages name an upload."""
    return f"'{filename}'" if filename else "the upload"


def _tf_reason(e: Exception) -> str:
    """TensorFlow's error message without its op-location decorations, on one line."""
    msg = getattr(e, "message", None) or str(e)
    msg = re.sub(r"\{\{[^}]*\}\}\s*", "", msg)
    msg = re.sub(r"\s*\[Op:\w+\].*$", "", msg, flags=re.S)
    msg = " ".join(msg.split())
    return (msg[:200] + "...") if len(msg) > 200 else (msg or type(e).__name__)


def estimate_jpeg_quality(quant: dict) -> int | None:
    """IJG quality (1-100) that would produce this luminance table, estimated from its mean scale."""
    if not quant or 0 not in quant:
        return None
    table = np.asarray(quant[0], dtype=np.float64)
    if table.size != 64:
        return None
    # Pillow gives tables in zig-zag order in some versions, natural in others; the mean ratio is order-free
    # only approximately, so compare sorted values.
    scale = float(np.mean(np.sort(table) * 100.0 / np.sort(_STD_LUMA)))
    q = (200 - scale) / 2 if scale <= 100 else 5000 / scale
    return int(np.clip(round(q), 1, 100))


def check_upload(data: bytes, filename: str = "", keep_pixels: int = 0) -> Checked:
    """Validates upload bytes by content (the same checks as for files); raises UploadError with the reason.

    Nothing touches the disk. ``keep_pixels``: keep the RGB pixels the check decoded (Pillow's, as
    :func:`fakedetect.data.checks.rgb_pixels` gives them) in ``Checked.pixels`` if the image has at most that
    many pixels.
    """
    facts: dict = {}
    kept: list = []

    def keep(im):
        if im.size[0] * im.size[1] <= keep_pixels:
            kept.append(rgb_array(im))

    def read_facts(im):
        facts["exif"] = bool(im.getexif())
        facts["jpeg_quality_estimate"] = (estimate_jpeg_quality(getattr(im, "quantization", None))
                                          if im.format in ("JPEG", "MPO") else None)

    info = check_bytes(data, ImageInfo(filename or "upload"), on_open=read_facts, on_loaded=keep)
    if info.error:
        name = _label(filename)
        hint = " (JPEG, PNG, WebP, BMP or GIF expected)" if info.error.startswith(("not an", "unsupported")) else ""
        raise UploadError(f"{name}: {info.error}{hint}")
    facts = {"format": info.format, "width": info.width, "height": info.height, "mode": info.mode,
             "bytes": info.nbytes, **facts}
    return Checked(data, facts, pillow_only=not info.tf_decodable, filename=filename,
                   pixels=kept[0] if kept else None)


class Scorer:
    """Holds the run; scores uploads through :meth:`Run.score`, one at a time (one per process).

    On the ONNX Runtime engine nothing of an upload's scoring needs TensorFlow: decoding (Pillow), framing and the
    variants (:mod:`fakedetect.pixels`) and the network; TensorFlow and the Keras model are loaded on the first
    explanation (Grad-CAM needs gradients)."""
    def __init__(self, run: Run):
        self.run = run
        self.numpy = run.engine == "onnxruntime"  # decoding, framing and variants without TensorFlow
        self._lock = threading.Lock()

    def decode(self, c: Checked):
        """The upload as a uint8 HxWx3 array or tensor, decoded as training decodes its files.

        Raises:
            UploadError: the decoder rejects bytes that Pillow's check accepted (e.g. junk before a JPEG's
                end-of-image marker, which libjpeg in TensorFlow refuses and Pillow tolerates).
        """
        if self.numpy or c.pillow_only:  # Pillow: without TensorFlow, or an animation (its first frame)
            if c.pixels is not None:  # decoded by the check already
                return c.pixels
            try:
                return rgb_pixels(io.BytesIO(c.data))
            except Exception as e:  # noqa: BLE001 - any decoder failure means an unusable upload
                reason = str(e).split("\n")[0] or type(e).__name__
                raise UploadError(f"{_label(c.filename)}: corrupt image: Pillow could not decode it ({reason})") from e
        import tensorflow as tf

        from fakedetect.data.pipeline import decode_bytes

        try:
            return decode_bytes(tf.constant(c.data))
        except tf.errors.ResourceExhaustedError:
            raise  # out of memory is the server's problem, not the upload's
        except tf.errors.OpError as e:
            msg = f"{_label(c.filename)}: corrupt image: TensorFlow's decoder rejected it ({_tf_reason(e)})"
            raise UploadError(msg) from e

    def analyse(self, c: Checked, explain: bool = False) -> dict:
        """P(fake) of the image, the decision, whether it flips under mild variants, and optionally Grad-CAM.

        Raises:
            UploadError: the image cannot be decoded (see :meth:`decode`).
        """
        t0 = time.perf_counter()
        img = self.decode(c)
        t1 = time.perf_counter()
        fr = self.run.framing
        if self.numpy:  # the same as below, in numpy (fakedetect.pixels)
            if fr.cropped:
                crops = pixels.frame(img, fr).astype(np.uint8)
                variants = {name: np.stack([make(crop) for crop in crops])
                            for name, make in mild_variants(numpy=True).items()}
            else:
                small = variant_source(img, self.run.image_size)
                variants = {name: make(small) for name, make in mild_variants(True, fr.size).items()}
        elif fr.cropped:
            # Crop mode: the variants are made of each of the image's K crops (K x S x S px whatever the upload's
            # size), outside the lock; the image's crops are scored with them in one pass.
            import tensorflow as tf

            from fakedetect.data.pipeline import scoring_crops

            crops = tf.cast(scoring_crops(img, fr), tf.uint8)
            variants = {name: tf.stack([make(crop) for crop in crops]) for name, make in mild_variants().items()}
        else:
            # The mild variants, made outside the lock from a copy at most VARIANT_MAX_SIDE px on its longer side.
            import tensorflow as tf

            small = tf.constant(variant_source(img, self.run.image_size))
            variants = {name: make(small) for name, make in mild_variants(False, fr.size).items()}
        t2 = time.perf_counter()
        with self._lock:
            t3 = time.perf_counter()
            s = self.run.score(images=[img], names=[c.filename], views=lambda _: variants)
        t4 = time.perf_counter()
        prob, t = float(s.prob_fake[0]), self.run.threshold
        scores = {name: float(v[0]) for name, v in s.views.items()}
        flips = [name for name, p in scores.items() if (p >= t) != (prob >= t)]
        out = {
            "prob_fake": prob,
            "prob_real": float(s.prob_real[0]),
            "label": s.label[0],
            "threshold": t,
            "uncertain": bool(flips),
            "uncertain_because": [f"the decision flips when the image is {f}" for f in flips],
            "variants": scores,
            # in_domain: False when the image is unlike the training images (None: not known)
            "in_domain": s.in_domain[0], "domain_distance": s.domain_distance[0],
            "image": c.facts,
            "input": fr.describe(),
            "engine": self.run.engine,
            # what the model has seen, and what it measured on generators it had not seen
            "claims": self.run.card.claims(),
            # where this upload's time went, in milliseconds (scoring: framing, the network and the domain check)
            "timing_ms": {"decode": 1000 * (t1 - t0), "variants": 1000 * (t2 - t1), "waiting": 1000 * (t3 - t2),
                          "scoring": 1000 * (t4 - t3)},
        }
        if fr.cropped:
            boxes, windows = crop_boxes(img.shape[0], img.shape[1], fr)
            probs = [float(p) for p in s.crops[0]]
            # the crop that drove the verdict: the most fake one for "fake", the least fake one for "real"
            lead = int(np.argmax(probs) if s.label[0] == "fake" else np.argmin(probs))
            out["crops"] = [{**box, "prob_fake": p} for box, p in zip(boxes, probs, strict=True)]
            out["decided_by_crop"] = lead
        if explain:
            import tensorflow as tf

            from fakedetect.data.pipeline import resize

            if fr.cropped:
                x = tf.cast(crops[lead][None], tf.float32)
                out["heatmap_png"] = self.heatmap_overlay(img, x, box=out["crops"][lead], window=windows[lead])
            else:
                out["heatmap_png"] = self.heatmap_overlay(img, tf.expand_dims(resize(img, self.run.image_size), 0))
            out["timing_ms"]["explanation"] = 1000 * (time.perf_counter() - t4)
        return out

    def gradcam(self, x) -> np.ndarray:
        """Grad-CAM of P(fake) on the backbone's last feature map; values in [0, 1]."""
        import tensorflow as tf

        model = self.run.model
        base = model.get_layer(BACKBONE_LAYER)
        pool, head = model.get_layer(POOL_LAYER), model.get_layer(OUTPUT_LAYER)
        with self._lock, tf.GradientTape() as tape:
            feat = base(x, training=False)
            tape.watch(feat)
            p = head(pool(feat))  # the head's dropout does nothing at inference
        grads = tape.gradient(p, feat)
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * feat, axis=-1))[0].numpy()
        return cam / cam.max() if cam.max() > 0 else cam

    def heatmap_overlay(self, img, x, max_side: int = 512, box: dict | None = None,
                        window: tuple[int, int, int, int] | None = None) -> str:
        """The Grad-CAM heatmap of the model input ``x`` blended over the image, as a PNG data URI. With ``box``
        (crop mode: ``x`` is that crop), the heatmap covers the box only, outlined; the rest of the image is
        dimmed; ``window`` (rows and columns of the crop that are the image's own pixels, not its mirror) cuts the
        heatmap to them first."""
        from matplotlib import colormaps
        from PIL import Image, ImageDraw

        cam = self.gradcam(x)
        if window is not None:  # the heat map's cells over the crop's own pixels (of S x S)
            s, (ch, cw) = x.shape[1], cam.shape
            r0, r1, c0, c1 = window
            cam = cam[r0 * ch // s:max(r0 * ch // s + 1, -(-r1 * ch // s)),
                      c0 * cw // s:max(c0 * cw // s + 1, -(-c1 * cw // s))]
        base = Image.fromarray(np.asarray(img)).convert("RGB")
        full = base.size
        base.thumbnail((max_side, max_side))
        scale = base.size[0] / full[0]
        if box is None:
            region = (0, 0, *base.size)
        else:
            region = tuple(round(v * scale) for v in (box["left"], box["top"], box["left"] + box["width"],
                                                      box["top"] + box["height"]))
            region = (*region[:2], max(region[2], region[0] + 1), max(region[3], region[1] + 1))
        size = (region[2] - region[0], region[3] - region[1])
        heat = Image.fromarray((cam * 255).astype(np.uint8)).resize(size, Image.Resampling.BILINEAR)
        colour = (colormaps["jet"](np.asarray(heat) / 255.0)[..., :3] * 255).astype(np.uint8)
        if box is None:
            blended = Image.blend(base, Image.fromarray(colour), 0.45)
        else:
            blended = Image.blend(base, Image.new("RGB", base.size), 0.4)  # dim what the crop leaves out
            inside = base.crop(region)
            blended.paste(Image.blend(inside, Image.fromarray(colour), 0.45), region[:2])
            ImageDraw.Draw(blended).rectangle(region, outline=(255, 255, 255), width=2)
        buf = io.BytesIO()
        blended.save(buf, "PNG")
        return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
