"""What the training loop measures on validation data, and the backbone features the frozen phase and the
domain model are fitted on: local forward passes over this worker's share of the images."""

from __future__ import annotations

import logging

import numpy as np

from fakedetect.data.splits import Split
from fakedetect.models import POOL_LAYER
from fakedetect.progress import Progress
from fakedetect.run import scoring_function
from fakedetect.training.inputs import eval_batches
from fakedetect.training.sums import binary_sums

log = logging.getLogger(__name__)


def features(model, split: Split, size: int, batch_size: int, what: str = "images") -> tuple[np.ndarray, np.ndarray]:
    """Backbone features (after pooling) of un-augmented images, and their labels; undecodable files left out."""
    fn = scoring_function(model)  # (P(fake), pooled features), compiled once per model
    idx, feats = [], []
    with Progress(f"features of {what}", len(split), log) as progress:
        for i, x, _ in eval_batches(split, size, batch_size):
            idx.append(i.numpy())
            feats.append(np.asarray(fn(x)[1], np.float32))
            progress.update(int(idx[-1][-1]) + 1)
    if not feats:
        width = int(model.get_layer(POOL_LAYER).output.shape[-1])
        return np.zeros((0, width), np.float32), np.zeros(0, np.float32)
    idx = np.concatenate(idx)
    return np.concatenate(feats), np.asarray(split.labels, np.float32)[idx]


def validator(model, split: Split | None, size: int, batch_size: int, features=None):
    """A function giving this worker's validation sums (see :func:`binary_sums`), from a local forward pass
    over its share of the validation images (or ``features``); its compiled model call is made once."""
    import tensorflow as tf

    fn = tf.function(lambda x: tf.reshape(model(x, training=False), [-1]), reduce_retracing=True)

    def validate() -> np.ndarray:
        ys, ps = [], []
        if features is not None:
            f, y = features
            for i in range(0, len(f), 256):
                ps.append(np.asarray(fn(f[i:i + 256]), np.float64))
            ys.append(y)
        else:
            for _, x, y in eval_batches(split, size, batch_size):
                ps.append(np.asarray(fn(x), np.float64))
                ys.append(y.numpy())
        y = np.concatenate(ys) if ys else np.zeros(0)
        p = np.concatenate(ps) if ps else np.zeros(0)
        return binary_sums(y, p)

    return validate
