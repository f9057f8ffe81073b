"""The web app's image work without TensorFlow: decoding, framing and the mild variants in numpy and Pillow.

On the ONNX Runtime engine a `serve` worker scores uploads without loading TensorFlow (about 800 MB a worker).
Its preprocessing then has to be TensorFlow's, computed otherwise:

- resizing is ``tf.image.resize(..., "bilinear", antialias=True)`` written out: TensorFlow's scale-and-translate
  with a triangle kernel widened by the scale when shrinking, as one weight matrix per axis (:func:`resize`);
  without antialias it is TensorFlow's half-pixel bilinear resize, the same matrices with the kernel unscaled;
- crops are :func:`fakedetect.framing.crop_offsets` of the image mirrored out by
  :func:`fakedetect.framing.mirror_index`, as ``data.pipeline`` cuts them;
- decoding (``data.checks.rgb_pixels``) and the JPEG 90 variant use Pillow's libjpeg, not TensorFlow's; both
  decode JPEGs with the accurate IDCT, so the decoded pixels are the same; the variant's two encoders may differ
  by a grey level here and there. ``benchmarks/engine_preprocessing.py`` bounds what each preprocessing change
  moves in P(fake) on real images, apart from the engine's own difference.
"""

from __future__ import annotations

import functools
import io

import numpy as np

from fakedetect.framing import Framing, crop_offsets, mirror_index


def _spans(n_in: int, n_out: int, antialias: bool):
    """Each output pixel's (index, first input pixel, weights) of TensorFlow's bilinear resize along one axis
    (half-pixel centres; a triangle kernel, widened by n_in / n_out when shrinking with ``antialias``; weights
    normalised to sum 1), computed in float32 as TensorFlow computes them: its scale is a float32, and the sampling
    positions' rounding moves the output by up to a thousandth of a grey level otherwise."""
    f32 = np.float32
    if antialias:  # scale_and_translate: scale = out / in, sampling at (x + 0.5) / scale
        inv_scale = f32(1.0) / (f32(n_out) / f32(n_in))
        kernel_scale = max(inv_scale, f32(1.0))
    else:  # ResizeBilinear with half-pixel centres: (x + 0.5) * (in / out)
        inv_scale, kernel_scale = f32(n_in) / f32(n_out), f32(1.0)
    for x in range(n_out):
        sample = (f32(x) + f32(0.5)) * inv_scale
        if sample < 0 or sample > n_in:
            continue
        start = int(np.ceil(sample - kernel_scale - f32(0.5)))
        end = int(np.floor(sample + kernel_scale - f32(0.5)))
        start, end = min(max(start, 0), n_in - 1), min(max(end, 0), n_in - 1) + 1
        src = np.arange(start, end, dtype=np.float32)
        k = np.maximum(f32(0.0), f32(1.0) - np.abs((src + f32(0.5) - sample) * (f32(1.0) / kernel_scale)))
        total = k.sum(dtype=np.float32)
        yield x, start, (k / total if total > 0 else k)


# Sides up to this many pixels keep their weights cached (a few hundred KB each); a longer side's weights (about
# two per input pixel) are made for the one image.
_CACHED_SIDE = 8192


def _sparse(n_in: int, n_out: int, antialias: bool):
    """TensorFlow's resize weights (:func:`_spans`) as a sparse n_out x n_in matrix, built without the dense one:
    a row has a few weights (about 2 x n_in / n_out when shrinking), so a product costs that many multiplications
    per output pixel, not n_in, and the matrix holds about 2 x n_in weights, not n_out x n_in (a thin
    1 x 64,000,000 upload would need 32 GB)."""
    if n_in <= _CACHED_SIDE and n_out <= _CACHED_SIDE:
        return _sparse_cached(n_in, n_out, antialias)
    return _build_sparse(n_in, n_out, antialias)


def _build_sparse(n_in: int, n_out: int, antialias: bool):
    from scipy.sparse import csr_matrix

    indptr, indices, data = [0] * (n_out + 1), [], []
    for x, start, k in _spans(n_in, n_out, antialias):
        indptr[x + 1] = len(k)
        indices.append(np.arange(start, start + len(k), dtype=np.int64))
        data.append(k)
    indptr = np.cumsum(indptr)
    return csr_matrix((np.concatenate(data) if data else np.zeros(0, np.float32),
                       np.concatenate(indices) if indices else np.zeros(0, np.int64), indptr),
                      shape=(n_out, n_in))


_sparse_cached = functools.lru_cache(maxsize=64)(_build_sparse)


def resize(img: np.ndarray, height: int, width: int, antialias: bool = True) -> np.ndarray:
    """An H x W x 3 image resized as ``tf.image.resize(img, (height, width), "bilinear", antialias)`` does
    (float32, not clipped)."""
    h, w = img.shape[:2]
    return _apply(img, _sparse(h, height, antialias), _sparse(w, width, antialias))


# Elements of a large image converted to float32 at a time (16 MB): a 64-megapixel upload is not copied whole.
_BLOCK = 4_000_000


def _apply(img: np.ndarray, wh, ww) -> np.ndarray:
    """``wh @ img @ ww.T`` on each channel of an H x W x C image (float32). The axis whose pass leaves the smaller
    intermediate goes first when that matters (a thin upload's long side is reduced before the other is
    resized, or a 2 x 1,000,000 image would pass through a 48 x 1,000,000 x 3 float array)."""
    h_in, w_in, _ = img.shape
    if wh.shape[0] * w_in > max(_BLOCK, h_in * ww.shape[0]):
        return np.ascontiguousarray(_rows_first(img.transpose(1, 0, 2), ww, wh).transpose(1, 0, 2))
    return _rows_first(img, wh, ww)


def _rows_first(img: np.ndarray, wh, ww) -> np.ndarray:
    """:func:`_apply` rows first: the rows on the image as an H x (W * C) matrix (every channel in one product,
    each output row a few long contiguous sums), then the columns on the (usually much smaller) result transposed
    once."""
    h_in, w_in, c = img.shape
    flat = img.reshape(h_in, w_in * c)  # a copy only if img is not C-contiguous (a transposed thin image)
    rows = np.zeros((wh.shape[0], w_in * c), np.float32)  # h x (W * C)
    # the float copy of a large image is made a block of at most _BLOCK elements at a time: blocks of columns,
    # and of rows too for a side longer than _BLOCK (a 64,000,000 x 1 upload)
    chunk = min(max(h_in, 1), _BLOCK)
    step = max(1, _BLOCK // chunk)
    by_column = wh.tocsc() if h_in > chunk else None  # cheap column slices of the weights, for row blocks
    for a in range(0, h_in, chunk):
        w = wh if by_column is None else by_column[:, a:a + chunk]
        for j in range(0, w_in * c, step):
            rows[:, j:j + step] += w @ flat[a:a + chunk, j:j + step].astype(np.float32)
    h = rows.shape[0]
    cols = np.ascontiguousarray(rows.reshape(h, w_in, c).transpose(1, 0, 2)).reshape(w_in, h * c)
    out = np.asarray(ww @ cols, np.float32)  # w x (h * C)
    return np.ascontiguousarray(out.reshape(ww.shape[0], h, c).transpose(1, 0, 2))


@functools.lru_cache(maxsize=64)
def _round_trip(n: int, m: int):
    """The weights of shrinking a side of n pixels to m (antialiased) and resizing it back to n, as one sparse
    n x n matrix (products in float64, stored in float32): one pass over the image instead of two."""
    back, down = _sparse(m, n, False), _sparse(n, m, True)
    return (back.astype(np.float64) @ down.astype(np.float64)).astype(np.float32).tocsr()


@functools.lru_cache(maxsize=64)
def _round_trip_to(n: int, m: int, s: int):
    """The weights of shrinking a side of n pixels to m (antialiased), resizing it back to n and then to the
    model's s (antialiased), as one sparse s x n matrix (products in float64, stored in float32)."""
    to, back, down = (_sparse(n, s, True).astype(np.float64), _sparse(m, n, False).astype(np.float64),
                      _sparse(n, m, True).astype(np.float64))
    return (to @ (back @ down)).astype(np.float32).tocsr()


def frame(img: np.ndarray, fr: Framing) -> np.ndarray:
    """A decoded uint8 image as the model scores it (float32 0..255): resized to S x S, or its K crops
    (K x S x S x 3) at native resolution, as ``data.pipeline.frame`` makes them."""
    s = fr.size
    if not fr.cropped:
        return np.clip(resize(img, s, s), 0.0, 255.0)
    h, w = img.shape[:2]
    if h < s or w < s:
        img = img[mirror_index(h, max(h, s))][:, mirror_index(w, max(w, s))]
        h, w = img.shape[:2]
    return np.stack([img[t:t + s, u:u + s] for t, u in crop_offsets(h, w, s, fr.crops)]).astype(np.float32)


def jpeg_reencode(q: int):
    """A function re-encoding a uint8 image as JPEG of quality ``q`` (Pillow; 4:2:0 as TensorFlow encodes)."""
    def f(img: np.ndarray) -> np.ndarray:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(np.asarray(img, np.uint8)).save(buf, "JPEG", quality=q, subsampling="4:2:0")
        buf.seek(0)
        with Image.open(buf, formats=["JPEG"]) as im:  # the JPEG just written (RGB: no conversion to copy)
            return np.asarray(im if im.mode == "RGB" else im.convert("RGB"), dtype=np.uint8)

    return f


def _shrunk(img: np.ndarray, factor: float) -> tuple[int, int]:
    """The size an image is shrunk to by ``factor``, as :func:`fakedetect.data.transforms.downscale` rounds it."""
    h, w = img.shape[:2]
    return max(int(round(h * factor)), 1), max(int(round(w * factor)), 1)


def downscale(factor: float):
    """A function shrinking a uint8 image by ``factor`` and resizing it back, as
    :func:`fakedetect.data.transforms.downscale` does."""
    def f(img: np.ndarray) -> np.ndarray:
        (h, w), (sh, sw) = img.shape[:2], _shrunk(img, factor)
        back = _apply(img, _round_trip(h, sh), _round_trip(w, sw))  # the two resizes in one pass
        np.clip(back, 0, 255, out=back)
        np.rint(back, out=back)  # as np.round: halves to even, as tf.round
        return back.astype(np.uint8)

    return f


def downscale_framed(factor: float, size: int):
    """A function giving the model's S x S input (float32) of a uint8 image shrunk by ``factor``, resized back and
    then framed, as :func:`fakedetect.data.transforms.downscale_framed` does: the three resizes as one product
    (about one resize's cost instead of two at the image's size), the round trip not rounded to 8 bits."""
    def f(img: np.ndarray) -> np.ndarray:
        (h, w), (sh, sw) = img.shape[:2], _shrunk(img, factor)
        out = _apply(img, _round_trip_to(h, sh, size), _round_trip_to(w, sw, size))
        return np.clip(out, 0.0, 255.0, out=out)

    return f
