"""Image perturbations on decoded uint8 images (TensorFlow ops, usable inside tf.data and in the web app).

The robustness command re-scores test sets under them; the web app uses two of them for its stability check.
TensorFlow is imported when a perturbation is built, so that the names are available without it (CLI help).
"""

from __future__ import annotations

from collections.abc import Callable


def jpeg_reencode(q: int):
    """A function re-encoding a uint8 image as JPEG of quality ``q``."""
    import tensorflow as tf

    def f(img):  # adjust_jpeg_quality, decoded with the accurate IDCT as data.pipeline.decode_bytes decodes
        data = tf.io.encode_jpeg(img, quality=q)
        return tf.ensure_shape(tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE"), [None, None, 3])

    return f


def blur(sigma: float):
    """A function blurring a uint8 image with a Gaussian of std ``sigma``."""
    import tensorflow as tf

    from fakedetect.data.pipeline import gaussian_blur

    def f(img):
        out = gaussian_blur(tf.cast(img, tf.float32), tf.constant(sigma, tf.float32), sigma)
        return tf.cast(tf.round(tf.clip_by_value(out, 0, 255)), tf.uint8)

    return f


def _round_trip(img, factor: float):
    """A uint8 image shrunk by ``factor`` (antialiased) and resized back to its size, in float32, not rounded."""
    import tensorflow as tf

    hw = tf.shape(img)[:2]
    small = tf.maximum(tf.cast(tf.round(tf.cast(hw, tf.float32) * factor), tf.int32), 1)
    return tf.image.resize(tf.image.resize(tf.cast(img, tf.float32), small, antialias=True), hw)


def downscale(factor: float):
    """A function shrinking a uint8 image by ``factor`` and resizing it back."""
    import tensorflow as tf

    def f(img):
        return tf.cast(tf.round(tf.clip_by_value(_round_trip(img, factor), 0, 255)), tf.uint8)

    return f


def downscale_framed(factor: float, size: int):
    """The model's S x S input (float32) of a uint8 image shrunk by ``factor``, resized back and framed (resize
    mode), without rounding the round trip to 8 bits: the web app's downscale variant, which
    :func:`fakedetect.pixels.downscale_framed` computes in one product on the ONNX Runtime engine."""
    from fakedetect.data.pipeline import resize

    def f(img):
        return resize(_round_trip(img, factor), size)

    return f


#: Perturbation name -> (kind, parameter); "clean" leaves the image as it is.
PERTURBATIONS: dict[str, tuple[str, float] | None] = {
    "clean": None,
    "reencode_both_jpeg90": ("jpeg", 90),
    **{f"jpeg_q{q}": ("jpeg", q) for q in (95, 75, 50, 30)},
    **{f"blur_sigma{s}": ("blur", float(s)) for s in (1, 2)},
    **{f"downscale_{f}": ("downscale", f) for f in (0.5, 0.25)},
}


def perturbations() -> dict[str, Callable | None]:
    """Name -> function on a decoded uint8 image (None: unchanged)."""
    make = {"jpeg": lambda q: jpeg_reencode(int(q)), "blur": blur, "downscale": downscale}
    return {name: None if spec is None else make[spec[0]](spec[1]) for name, spec in PERTURBATIONS.items()}
