"""The domain check's trace features (fakedetect.trace): what each measures, against numpy references."""

import numpy as np
import pytest

from fakedetect.domain import fit_domain
from fakedetect.trace import BANDS, NAMES, _spectrum_constants, trace_features

rng = np.random.default_rng(0)


def test_shape_names_and_npr_residual_of_a_nearest_upsampled_image_is_zero():
    x = rng.uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    up = np.repeat(np.repeat(x, 2, axis=1), 2, axis=2)  # 64 x 64, every 2x2 block one pixel
    f, g = trace_features(x).numpy(), trace_features(up).numpy()
    assert f.shape == (3, len(NAMES)) == (3, 26) and np.isfinite(f).all()
    npr = [NAMES.index(n) for n in NAMES if n.startswith("npr")]
    assert np.allclose(g[:, npr], np.log(1e-3)) and (f[:, npr] > 3).all()  # noise: |residual| ~ 85


def test_laplacian_correlation_of_a_grey_image_is_one_and_of_independent_channels_near_zero():
    grey = np.repeat(rng.uniform(0, 255, (1, 48, 48, 1)), 3, axis=3).astype(np.float32)
    noise = rng.uniform(0, 255, (1, 48, 48, 3)).astype(np.float32)
    corr = [NAMES.index(n) for n in NAMES if n.startswith("laplacian_corr")]
    assert np.allclose(trace_features(grey).numpy()[0, corr], 1, atol=1e-3)
    assert np.abs(trace_features(noise).numpy()[0, corr]).max() < 0.1


def test_spectrum_matches_numpy_fft():
    x = rng.uniform(0, 255, (2, 40, 56, 3)).astype(np.float32)
    const = _spectrum_constants(40, 56)
    g = x.mean(axis=3)
    g = (g - g.mean(axis=(1, 2), keepdims=True)) * const["window"]
    power = np.log(np.abs(np.fft.fft2(g)) ** 2 + 1e-3).reshape(2, -1)
    bands = power @ const["rings"]
    f = trace_features(x).numpy()
    first = NAMES.index("spectrum_band_0")
    assert np.allclose(f[:, first:first + BANDS], bands - bands.mean(axis=1, keepdims=True), atol=1e-3)
    assert np.allclose(f[:, -3:], power @ const["peaks"], atol=1e-3)


def test_a_periodic_pattern_raises_its_peak():
    base = rng.normal(128, 20, (1, 64, 64, 3))
    checker = (np.indices((64, 64)).sum(axis=0) % 2)[None, :, :, None] * 30.0  # period 2 in both directions
    plain, marked = (trace_features(v.astype(np.float32)).numpy()[0] for v in (base, base + checker))
    d = NAMES.index("spectrum_peak_d")
    assert marked[d] > plain[d] + 3


def test_trace_features_need_a_known_size():
    import tensorflow as tf

    fn = tf.function(trace_features, input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    with pytest.raises(ValueError, match="height and width"):
        fn.get_concrete_function()


def test_a_domain_model_fitted_without_the_trace_depth_reads_the_last_depths():
    x = [rng.normal(size=(60, 4)), rng.normal(size=(60, 6)), rng.normal(size=(60, 5))]  # trace, a tap, pooled
    y = rng.integers(0, 2, 60)
    old = fit_domain(x[1:], y, [v[:20] for v in x[1:]])
    assert np.allclose(old.distance(x), old.distance(x[1:]))
