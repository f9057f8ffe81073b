"""The domain check's trace space: how an image's pixels relate to their neighbours, not what it shows.

The backbone's features say what an image looks like; two generators can draw the same face. What differs between
a camera and a generator, or between two generators, lies between neighbouring pixels: a decoder's upsampling
leaves periodic peaks in the spectrum and a residual of nearest-neighbour resampling unlike a photograph's (NPR,
Tan et al. 2024; Durall et al. 2020 for the spectra), and a camera's demosaicing ties the colour channels' fine
detail together where a generator's need not be. The trace features are a short vector of such statistics of the
model's input (the resized image, or each native-resolution crop, then averaged over the crops as the deep
features are), measured from the same batch the model scores, in TensorFlow, inside the one scoring function:

- the NPR residual ``x - up(down(x))`` (nearest, factor 2): log mean magnitude at each of the three phases of a
  2x2 block that it does not copy, and per colour channel;
- the 3x3 Laplacian of the grey image: log standard deviation and log kurtosis (noise level, its heavy tail);
- the colour channels' Laplacians: their three pairwise correlations (demosaicing);
- the power spectrum of the grey image (Hann-windowed): mean log power in ``BANDS`` rings of radius, less their
  overall mean (the spectrum's shape, not its level), and the log power at the three 2x2-period frequencies
  against the ring around them (upsampling's peaks).

The domain model fits its Gaussians on these (the depth named :data:`TRACE_DEPTH`) as on any backbone depth.
"""

from __future__ import annotations

import functools

import numpy as np

TRACE_DEPTH = "trace"  # the domain model's name of this depth
BANDS = 12  # rings of the radial spectrum
NAMES = ([f"npr_phase_{p}" for p in ("01", "10", "11")] + [f"npr_{c}" for c in "rgb"]
         + ["laplacian_log_std", "laplacian_log_kurtosis"] + [f"laplacian_corr_{a}{b}" for a, b in ("rg", "gb", "rb")]
         + [f"spectrum_band_{i}" for i in range(BANDS)] + [f"spectrum_peak_{p}" for p in ("h", "v", "d")])
EPS = 1e-3


def trace_features(x):
    """The trace features (B x len(NAMES), float32) of a batch of model inputs x (B x S x S x 3, float 0..255,
    S even and at least 8)."""
    import tensorflow as tf

    x = tf.cast(x, tf.float32)
    h_static, w_static = x.shape[1], x.shape[2]
    if h_static is None or w_static is None:
        raise ValueError("trace_features needs the input's height and width known when the graph is built")
    b, h, w = tf.shape(x)[0], h_static, w_static

    # NPR: nearest down by 2 keeps each 2x2 block's top-left pixel; up copies it back over the block.
    top_left = x[:, ::2, ::2, :]
    up = tf.repeat(tf.repeat(top_left, 2, axis=1), 2, axis=2)[:, :h, :w, :]
    r = tf.abs(x - up)
    phases = [tf.reduce_mean(r[:, i::2, j::2, :], axis=[1, 2, 3]) for i, j in ((0, 1), (1, 0), (1, 1))]
    per_channel = tf.reduce_mean(r, axis=[1, 2]) * 4 / 3  # the copied phase is zero: mean of the other three
    npr = tf.math.log(tf.concat([tf.stack(phases, axis=1), per_channel], axis=1) + EPS)

    # Laplacians: grey statistics and the correlation of the channels' fine detail.
    kernel = tf.constant([[0, 1, 0], [1, -4, 1], [0, 1, 0]], tf.float32)
    lap = tf.nn.depthwise_conv2d(x, tf.tile(kernel[:, :, None, None], [1, 1, 3, 1]), [1, 1, 1, 1], "VALID")
    grey = tf.reduce_mean(lap, axis=3)
    var = tf.reduce_mean(tf.square(grey), axis=[1, 2])
    kurt = tf.reduce_mean(tf.square(tf.square(grey)), axis=[1, 2]) / (tf.square(var) + EPS)
    lap_stats = tf.stack([0.5 * tf.math.log(var + EPS), tf.math.log(kurt + EPS)], axis=1)
    c = lap - tf.reduce_mean(lap, axis=[1, 2], keepdims=True)
    sd = tf.sqrt(tf.reduce_mean(tf.square(c), axis=[1, 2]) + EPS)

    def corr(i, j):
        return tf.reduce_mean(c[..., i] * c[..., j], axis=[1, 2]) / (sd[:, i] * sd[:, j])

    corrs = tf.stack([corr(0, 1), corr(1, 2), corr(0, 2)], axis=1)

    # The spectrum of the grey image, windowed: a DFT by matrix products (plain MatMul for every engine; at these
    # sizes as fast as an FFT), constants built once per input size. In float64: the log of a weak frequency's
    # power is otherwise at the mercy of float32 rounding in sums of strong ones, and two engines that sum in
    # different orders would disagree.
    spec = _spectrum_constants(int(h_static), int(w_static))
    g = tf.cast(tf.reduce_mean(x, axis=3), tf.float64)
    g = (g - tf.reduce_mean(g, axis=[1, 2], keepdims=True)) * spec["window"]
    ch, sh, cw, sw = spec["cos_h"], spec["sin_h"], spec["cos_w"], spec["sin_w"]
    re = tf.einsum("ij,bjk,kl->bil", ch, g, cw) - tf.einsum("ij,bjk,kl->bil", sh, g, sw)
    im = tf.einsum("ij,bjk,kl->bil", ch, g, sw) + tf.einsum("ij,bjk,kl->bil", sh, g, cw)
    power = tf.reshape(tf.math.log(tf.square(re) + tf.square(im) + EPS), [b, -1])
    bands = tf.matmul(power, spec["rings"])  # (b, BANDS): each ring's mean
    bands = tf.cast(bands - tf.reduce_mean(bands, axis=1, keepdims=True), tf.float32)
    peaks = tf.cast(tf.matmul(power, spec["peaks"]), tf.float32)  # (b, 3): each peak's mean less its ring's
    return tf.concat([npr, lap_stats, corrs, bands, peaks], axis=1)


@functools.lru_cache(maxsize=8)
def _spectrum_constants(h: int, w: int) -> dict:
    """The DFT matrices, the Hann window, the rings' averaging matrix and the peaks' contrast matrix for an h x w
    input (numpy float64; frequencies in cycles per pixel as numpy.fft.fftfreq gives them)."""
    def dft(n):
        k = np.arange(n)
        angle = 2 * np.pi * np.outer(k, k) / n
        return np.cos(angle), np.sin(angle)

    (ch, sh), (cw, sw) = dft(h), dft(w)
    fy, fx = np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij")
    radius = np.hypot(fy, fx).reshape(-1)  # 0 .. 0.707
    ring = np.minimum((radius / 0.5 * BANDS).astype(int), BANDS - 1)  # corners past 0.5 share the last ring
    rings = np.zeros((h * w, BANDS))
    rings[np.arange(h * w), ring] = 1
    rings /= np.maximum(rings.sum(axis=0), 1)
    peaks = np.zeros((h * w, 3))
    for j, (y0, x0) in enumerate(((0.0, 0.5), (0.5, 0.0), (0.5, 0.5))):
        at = (np.abs(np.abs(fy) - y0) < 1e-6) & (np.abs(np.abs(fx) - x0) < 1e-6)
        near = np.abs(radius - np.hypot(y0, x0)) < 1.5 / min(h, w)
        peaks[:, j] = at.reshape(-1) / max(at.sum(), 1) - near / max(near.sum(), 1)
    window = np.outer(np.hanning(h + 1)[:-1], np.hanning(w + 1)[:-1])  # periodic Hann
    return {"cos_h": ch, "sin_h": sh, "cos_w": cw, "sin_w": sw, "rings": rings, "peaks": peaks, "window": window}
