"""`Run.score`, the one scoring call (issue 24): files and decoded images give the same rows, calibration and the
threshold are applied there, views ride in the image's forward pass, undecodable inputs are listed."""

import numpy as np
import pytest

from fakedetect.metrics import apply_temperature
from fakedetect.run import DECODE_FAILED, load_run

from .conftest import tf_rejected_jpeg


@pytest.fixture(scope="module")
def run(calibrated_run):
    return load_run(calibrated_run)


def _files(tiny_data, n=4):
    return sorted(str(p) for p in (tiny_data / "real").glob("*.jpg"))[:n // 2] + \
        sorted(str(p) for p in (tiny_data / "fake").glob("*.jpg"))[:n // 2]


def test_files_and_decoded_images_score_alike_with_the_runs_calibration(run, tiny_data):
    import tensorflow as tf

    from fakedetect.data.pipeline import decode_bytes

    paths = _files(tiny_data)
    by_file = run.score(paths=paths)
    images = [decode_bytes(tf.io.read_file(p)) for p in paths]
    by_image = run.score(images=images, names=paths)
    assert by_file.names == by_image.names == paths and list(by_file.kept) == [0, 1, 2, 3]
    np.testing.assert_allclose(by_file.prob_fake, by_image.prob_fake, atol=1e-6)
    np.testing.assert_allclose(by_file.domain_distance, by_image.domain_distance, rtol=1e-5)
    assert by_file.in_domain == by_image.in_domain and by_file.label == by_image.label
    # The run's temperature (2.5) and threshold (0.4), applied in this one place.
    np.testing.assert_allclose(by_file.prob_fake, apply_temperature(by_file.raw, 2.5))
    assert by_file.label == ["fake" if p >= 0.4 else "real" for p in by_file.prob_fake]
    table = by_file.table()
    assert list(table.columns) == ["path", "prob_fake", "prob_real", "label", "in_domain", "domain_distance"]


def test_views_ride_along_and_do_not_touch_the_images_score(run, tiny_data):
    import tensorflow as tf

    from fakedetect.data.pipeline import decode_bytes

    img = decode_bytes(tf.io.read_file(_files(tiny_data)[0]))
    alone = run.score(images=[img])
    s = run.score(images=[img], views=lambda im: {"same": im, "mirrored": tf.reverse(im, axis=[1])})
    assert s.prob_fake[0] == pytest.approx(alone.prob_fake[0], abs=1e-6)
    assert s.views["same"][0] == pytest.approx(s.prob_fake[0], abs=1e-6)
    assert s.domain_distance[0] == pytest.approx(alone.domain_distance[0], rel=1e-5)  # the image's own features
    assert set(s.views) == {"same", "mirrored"}


def test_an_undecodable_file_is_listed_not_scored(run, tiny_data, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(tf_rejected_jpeg())
    good = _files(tiny_data, 2)
    s = run.score(paths=[good[0], str(bad), good[1]], batch_size=2)
    assert s.names == [good[0], good[1]] and list(s.kept) == [0, 2]
    assert s.skipped == [(str(bad), DECODE_FAILED)]
    with pytest.raises(ValueError):
        run.score()
