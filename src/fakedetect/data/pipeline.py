"""tf.data input pipelines: decode, (degrade), frame (resize, or native-resolution crops), batch, (augment),
prefetch.

Images are decoded by content with TensorFlow's decoders; the rare file TensorFlow cannot decode (BMP, TIFF,
CMYK JPEG) or should not (an animated GIF or WebP: TensorFlow decodes every frame, Pillow only the first),
flagged by :func:`fakedetect.data.check_image`, goes through Pillow instead. Pixels stay 0..255
floats: the model normalises them itself.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from fakedetect.config import AugmentConfig
from fakedetect.data.checks import rgb_pixels
from fakedetect.framing import Framing, crop_offsets, framing

AUTOTUNE = tf.data.AUTOTUNE


def _pillow_decode(path: bytes) -> np.ndarray:
    return rgb_pixels(path.decode())  # an animation: its first frame


def decode_bytes(data: tf.Tensor) -> tf.Tensor:
    """Decodes encoded image bytes (JPEG, PNG, GIF, WebP) as uint8 HxWx3: first GIF frame, alpha dropped.

    Only for still images: an animation's bytes go to Pillow (``ImageInfo.tf_decodable`` is False for them).
    A JPEG is decoded with libjpeg's accurate integer IDCT (TensorFlow's default is the fast one, up to 5 grey
    levels away): the pixels every other decoder gives (Pillow's exactly), so that scoring without TensorFlow
    (:mod:`fakedetect.pixels`) sees the same image.
    """
    return tf.cond(tf.io.is_jpeg(data),
                   lambda: tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE"),
                   lambda: tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8))


def decode_now(data: bytes) -> tf.Tensor:
    """:func:`decode_bytes` of bytes in hand, run eagerly: the same decoders, chosen in Python (what
    ``tf.io.is_jpeg`` tests: the first three bytes), one op call instead of a conditional's four."""
    if data[:3] == b"\xff\xd8\xff":
        return tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE")
    return tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8)


def decode_image(path: tf.Tensor, pillow_only: tf.Tensor) -> tf.Tensor:
    """Reads one file as a uint8 HxWx3 tensor (first frame of a GIF; alpha dropped; grey -> RGB)."""
    def tf_decode():
        return decode_bytes(tf.io.read_file(path))

    def pil_decode():
        img = tf.numpy_function(_pillow_decode, [path], tf.uint8, stateful=False)
        return tf.ensure_shape(img, [None, None, 3])

    return tf.cond(pillow_only, pil_decode, tf_decode)


def resize(img: tf.Tensor, size: int) -> tf.Tensor:
    """Square resize to the model's input (float32, 0..255). The same function serves training and inference."""
    img = tf.image.resize(tf.cast(img, tf.float32), (size, size), method="bilinear", antialias=True)
    return tf.clip_by_value(img, 0.0, 255.0)


def mirror_pad(img: tf.Tensor, size: int) -> tf.Tensor:
    """An HxWx3 image mirrored out to at least ``size`` in each side (centred; see
    :func:`fakedetect.framing.mirror_index`): no pixel is interpolated. Larger sides are left as they are."""
    def index(n, m):  # framing.mirror_index in TensorFlow ops
        j = tf.math.floormod(tf.range(m) - (m - n) // 2, 2 * n)
        return tf.where(j >= n, 2 * n - 1 - j, j)

    def pad():
        h, w = tf.shape(img)[0], tf.shape(img)[1]
        x = tf.gather(img, index(h, tf.maximum(h, size)), axis=0)
        return tf.gather(x, index(w, tf.maximum(w, size)), axis=1)

    small = tf.reduce_any(tf.shape(img)[:2] < size)
    return tf.ensure_shape(tf.cond(small, pad, lambda: img), [None, None, 3])


def scoring_crops(img: tf.Tensor, fr: Framing) -> tf.Tensor:
    """The K fixed crops of an image (``fr.crops`` x S x S x 3, float32 0..255), at its native resolution."""
    img = mirror_pad(img, fr.size)
    h, w, s = tf.shape(img)[0], tf.shape(img)[1], fr.size
    crops = tf.stack([img[t:t + s, u:u + s] for t, u in crop_offsets(h, w, s, fr.crops)])
    return tf.ensure_shape(tf.cast(crops, tf.float32), [fr.crops, s, s, 3])


def random_crop(img: tf.Tensor, size: int) -> tf.Tensor:
    """One random S x S crop at native resolution (float32 0..255): crop mode's training input."""
    crop = tf.image.random_crop(mirror_pad(img, size), [size, size, 3])
    return tf.cast(crop, tf.float32)


def frame(img: tf.Tensor, fr: Framing) -> tf.Tensor:
    """A decoded image as the model scores it: resized (S x S x 3), or its K crops (K x S x S x 3)."""
    return scoring_crops(img, fr) if fr.cropped else resize(img, fr.size)


def gaussian_blur(img: tf.Tensor, sigma: tf.Tensor, max_sigma: float) -> tf.Tensor:
    """Blurs a float HxWx3 image with a Gaussian of std ``sigma`` (kernel sized for ``max_sigma``)."""
    radius = max(1, int(math.ceil(3 * max_sigma)))
    x = tf.range(-radius, radius + 1, dtype=tf.float32)
    k = tf.exp(-0.5 * tf.square(x / sigma))
    k = k / tf.reduce_sum(k)
    kh = tf.tile(tf.reshape(k, [-1, 1, 1, 1]), [1, 1, 3, 1])
    kw = tf.tile(tf.reshape(k, [1, -1, 1, 1]), [1, 1, 3, 1])
    x4 = tf.pad(img[None], [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="SYMMETRIC")
    x4 = tf.nn.depthwise_conv2d(x4, kh, [1, 1, 1, 1], "VALID")
    x4 = tf.nn.depthwise_conv2d(x4, kw, [1, 1, 1, 1], "VALID")
    return x4[0]


def degrade(img: tf.Tensor, aug: AugmentConfig) -> tf.Tensor:
    """Random JPEG re-encoding and Gaussian blur, each with its probability; uint8 in, uint8 out.

    Applied to both classes alike, at the image's own resolution, so that compression and blur stop being
    cues for the label (CNNDetection's recipe).
    """
    if aug.jpeg_prob > 0:
        q = tf.random.uniform([], aug.jpeg_quality[0], aug.jpeg_quality[1] + 1, dtype=tf.int32)
        img = tf.cond(tf.random.uniform([]) < aug.jpeg_prob,
                      lambda: tf.image.adjust_jpeg_quality(img, q), lambda: img)
        img = tf.ensure_shape(img, [None, None, 3])
    if aug.blur_prob > 0:
        sigma = tf.random.uniform([], aug.blur_sigma[0], aug.blur_sigma[1])
        max_sigma = aug.blur_sigma[1]
        img = tf.cond(tf.random.uniform([]) < aug.blur_prob,
                      lambda: tf.cast(tf.round(tf.clip_by_value(
                          gaussian_blur(tf.cast(img, tf.float32), sigma, max_sigma), 0, 255)), tf.uint8),
                      lambda: img)
    return img


def build_augmenter(aug: AugmentConfig, seed: int, resample: bool = True):
    """Geometric and photometric batch augmentation (Keras preprocessing layers, run inside tf.data).
    ``resample`` False leaves out what interpolates pixels (rotation, zoom): crop mode."""
    import keras

    layers = []
    if aug.flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    if aug.rotation > 0 and resample:
        layers.append(keras.layers.RandomRotation(aug.rotation, fill_mode="reflect", seed=seed + 1))
    if aug.zoom > 0 and resample:
        layers.append(keras.layers.RandomZoom(aug.zoom, fill_mode="reflect", seed=seed + 2))
    if aug.contrast > 0:
        layers.append(keras.layers.RandomContrast(aug.contrast, value_range=(0, 255), seed=seed + 3))
    return keras.Sequential(layers, name="augment") if layers else None


def build_dataset(paths: list[str], labels: list[int] | None, image_size: int | Framing, batch_size: int,
                  pillow_only: list[bool] | None = None, perturb=None) -> tf.data.Dataset:
    """Batches of (index, images[, labels]) in file order, for scoring (training streams: :func:`build_stream`).

    A file that TensorFlow's decoder rejects although Pillow's checks accepted it (a JPEG with garbage before its
    end marker, say) is dropped, never an error that ends the run: every element carries its position in
    ``paths``, so that callers can tell which files were dropped.

    Args:
        paths: image files, already checked (see :func:`fakedetect.data.to_split`).
        labels: 0 (real) / 1 (fake) per path, or None.
        image_size: square input size of the model (resized images), or its :class:`Framing` (crop mode: each
            element holds the image's K crops, K x S x S x 3).
        batch_size: images per batch; in crop mode, crops per batch (``batch_size // K`` images).
        pillow_only: per path, True when TensorFlow cannot decode it (decoded by Pillow instead).
        perturb: optional function applied to every decoded uint8 image before framing (robustness tests).
    """
    fr = framing(image_size)
    batch_size = max(1, batch_size // fr.views)  # crop mode: a batch of images is K times as many crops
    flags = pillow_only if pillow_only is not None else [False] * len(paths)
    extra = () if labels is None else (tf.constant(labels, tf.float32),)
    ds = tf.data.Dataset.from_tensor_slices((tf.range(len(paths), dtype=tf.int64), tf.constant(paths, tf.string),
                                             tf.constant(flags, tf.bool), *extra))

    def load(index, path, flag, *label):
        img = decode_image(path, flag)
        if perturb is not None:
            img = perturb(img)
        return (index, frame(img, fr), *label)

    ds = ds.map(load, num_parallel_calls=AUTOTUNE).ignore_errors()
    return ds.batch(batch_size).prefetch(AUTOTUNE)


def mix_streams(make, n: int, sources: list[int] | None, mix: list[float] | None, seed: int) -> tf.data.Dataset:
    """The endless stream of ``n`` items from ``make(positions)`` (a dataset of the items at those positions).

    With several sources (``sources``: each item's source; ``mix``: each source's share), each source is shuffled
    and repeated on its own and the stream draws from them at random in those shares (seeded: the same draws
    everywhere); an empty source is left out and the other shares renormalised. Otherwise all items are one
    part, shuffled and repeated.
    """
    if sources is None or mix is None or len(mix) < 2:
        groups, shares = [np.arange(n)], [1.0]
    else:
        src = np.asarray(sources, int)
        groups, shares = [np.flatnonzero(src == k) for k in range(len(mix))], list(mix)
    kept = [(make(g).shuffle(len(g), seed=seed + k, reshuffle_each_iteration=True).repeat(), w)
            for k, (g, w) in enumerate(zip(groups, shares, strict=True)) if len(g)]
    if not kept:
        raise ValueError("no training example to stream")
    if len(kept) == 1:
        return kept[0][0]
    total = sum(w for _, w in kept)
    return tf.data.Dataset.sample_from_datasets([d for d, _ in kept], weights=[w / total for _, w in kept], seed=seed)


def mixup_batch(x: tf.Tensor, y: tf.Tensor, alpha: float, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Mixup (Zhang et al., 2018): the batch becomes lam x itself + (1 - lam) x a permutation of itself, images
    and labels alike, with one lam ~ Beta(alpha, alpha) per batch; ``seed`` (two integers) makes it repeatable."""
    s = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 3)
    g1 = tf.random.stateless_gamma([], s[0], alpha)
    g2 = tf.random.stateless_gamma([], s[1], alpha)
    lam = tf.math.divide_no_nan(g1, g1 + g2)
    perm = tf.argsort(tf.random.stateless_uniform([tf.shape(x)[0]], s[2]))
    lx = tf.cast(lam, x.dtype)  # float16 images under a mixed-precision policy; labels stay float32
    return lx * x + (1 - lx) * tf.gather(x, perm), lam * y + (1 - lam) * tf.gather(y, perm)


def build_stream(paths: list[str], labels: list[int], image_size: int | Framing, batch_size: int,
                 augment: AugmentConfig | None, seed: int, pillow_only: list[bool] | None = None,
                 shard: tuple[int, int] = (1, 0), cache: bool = False, sources: list[int] | None = None,
                 mix: list[float] | None = None, mixup: float = 0.0) -> tf.data.Dataset:
    """The endless training stream of one input pipeline: (images, labels) batches of ``batch_size``, full only.

    The file list is reshuffled every epoch with ``seed`` (the same order on every worker), then sharded by
    position *before decoding*: pipeline ``i`` of ``n`` (``shard=(n, i)``) reads and decodes only every n-th
    file. As replicas take consecutive batches, a global step sees the same images whatever the number of
    workers: training on N machines is the same computation as on one, with the same global batch.

    With ``cache`` (one pipeline only: the images fit in memory) the files are decoded once and kept; later
    epochs only shuffle, augment and resize them.

    In crop mode (``image_size`` a cropping :class:`Framing`), each image gives one random S x S crop at its own
    resolution instead of being resized, and the augmentations that resample (rotation, zoom) are left out:
    no pixel of a crop is interpolated (flip, contrast, JPEG and blur still apply).

    With several sources (``sources``, ``mix``): drawn by share, before sharding (see :func:`mix_streams`).
    With ``mixup`` (an alpha > 0), each batch is mixed with itself after augmentation (:func:`mixup_batch`): the
    labels become fractions. The mixing seeds are sharded like the files, so pipeline ``i`` of ``n`` mixes its
    batches as the ``i``-th replica of one machine would; partners come from the same per-replica batch.
    """
    fr = framing(image_size)
    n_shards, index = shard
    if cache and n_shards != 1:
        raise ValueError("cached decoding is for a single input pipeline")
    flags = pillow_only if pillow_only is not None else [False] * len(paths)

    def files(positions):
        ds = tf.data.Dataset.from_tensor_slices((tf.constant([paths[i] for i in positions], tf.string),
                                                 tf.constant([flags[i] for i in positions], tf.bool),
                                                 tf.constant([labels[i] for i in positions], tf.float32)))
        if cache:
            ds = ds.map(lambda path, flag, y: (decode_image(path, flag), y), num_parallel_calls=AUTOTUNE)
            ds = ds.ignore_errors().cache()
        return ds

    ds = mix_streams(files, len(paths), sources, mix, seed)
    if not cache:
        if n_shards > 1:
            ds = ds.shard(n_shards, index)
        ds = ds.map(lambda path, flag, y: (decode_image(path, flag), y), num_parallel_calls=AUTOTUNE,
                    deterministic=True).ignore_errors()

    def load(img, y):
        if augment is not None:
            img = degrade(img, augment)
        return (random_crop(img, fr.size) if fr.cropped else resize(img, fr.size)), y

    ds = ds.map(load, num_parallel_calls=AUTOTUNE).batch(batch_size, drop_remainder=True)
    augmenter = build_augmenter(augment, seed, resample=not fr.cropped) if augment is not None else None
    if augmenter is not None:
        ds = ds.map(lambda x, y: (augmenter(x, training=True), y), num_parallel_calls=AUTOTUNE)
    if mixup:
        seeds = tf.data.Dataset.random(seed=seed).batch(2).shard(n_shards, index)
        ds = tf.data.Dataset.zip((ds, seeds)).map(lambda xy, s: mixup_batch(*xy, float(mixup), s),
                                                   num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)
