"""What the training loop measures on validation data, and the backbone features the frozen phase and the
domain model are fitted on: local forward passes over this worker's share of the images."""

from __future__ import annotations

import logging

import numpy as np

from fakedetect.data.splits import Split
from fakedetect.framing import Framing, framing
from fakedetect.models import POOL_LAYER
from fakedetect.progress import Progress
from fakedetect.run import scoring_function
from fakedetect.training.inputs import eval_batches
from fakedetect.training.sums import binary_sums

log = logging.getLogger(__name__)


def features(model, split: Split, size: int | Framing, batch_size: int,
             what: str = "images") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backbone features (after pooling) of un-augmented images, their labels and their sources; undecodable
    files left out."""
    _, feats, pos = score_split(model, split, size, batch_size, f"features of {what}", last_only=True)
    if not feats:
        width = int(model.get_layer(POOL_LAYER).output.shape[-1])
        return np.zeros((0, width), np.float32), np.zeros(0, np.float32), np.zeros(0, int)
    sources = np.asarray(split.sources, int)[pos] if split.sources else np.zeros(len(pos), int)
    return feats[0], np.asarray(split.labels, np.float32)[pos], sources


def score_split(model, split: Split, size: int | Framing, batch_size: int, what: str = "scored images",
                keep: np.ndarray | None = None, last_only: bool = False
                ) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """One forward pass over un-augmented images: (uncalibrated P(fake) of each image, NaN for a file that could
    not be decoded; the features at every depth (see :func:`fakedetect.run.scoring_function`; with
    ``last_only``, the pooled features only) of the images at positions ``keep`` (all when None) that decoded;
    those positions). ``what`` names the work in progress messages. In crop mode (``size`` a cropping
    :class:`Framing`) an image's score combines its crops' and its features are their mean."""
    fn = scoring_function(model, fr=framing(size))
    p = np.full(len(split), np.nan)
    wanted = np.ones(len(split), bool) if keep is None else np.isin(np.arange(len(split)), keep)
    positions, feats = [], []
    with Progress(what, len(split), log) as progress:
        for i, x, _ in eval_batches(split, size, batch_size):
            i = i.numpy()
            prob, depths, _ = fn(x)
            p[i] = np.asarray(prob, np.float64).reshape(-1)
            sel = wanted[i]
            if sel.any():
                positions.append(i[sel])
                feats.append([np.asarray(f, np.float32)[sel] for f in (depths[-1:] if last_only else depths)])
            progress.update(int(i[-1]) + 1)
    if not feats:
        return p, [], np.zeros(0, int)
    return p, [np.concatenate(f) for f in zip(*feats, strict=True)], np.concatenate(positions)


def validator(model, split: Split | None, size: int | Framing, batch_size: int, features=None,
              n_sources: int = 1):
    """A function giving this worker's validation sums (see :func:`binary_sums`), from a local forward pass
    over its share of the validation images (or ``features``: (features, labels, sources)); its compiled model
    call is made once. With several sources, the sums of every source follow those of all images. In crop mode
    an image's P(fake) combines its crops' logits, as scoring does."""
    import tensorflow as tf

    from fakedetect.run import combine_crops

    fr = framing(size)

    def call(x):
        if features is not None or not fr.cropped:
            return tf.reshape(model(x, training=False), [-1])
        p = model(tf.reshape(x, tf.concat([[-1], tf.shape(x)[2:]], 0)), training=False)
        return tf.sigmoid(combine_crops(p, tf.shape(x)[0], fr.crops, fr.combine)[1])

    fn = tf.function(call, reduce_retracing=True)

    def validate() -> np.ndarray:
        ys, ps, ss = [], [], []
        if features is not None:
            f, y, src = features
            for i in range(0, len(f), 256):
                ps.append(np.asarray(fn(f[i:i + 256]), np.float64))
            ys.append(y)
            ss.append(src)
        else:
            sources = np.asarray(split.sources, int) if split.sources else np.zeros(len(split), int)
            for i, x, y in eval_batches(split, size, batch_size):
                ps.append(np.asarray(fn(x), np.float64))
                ys.append(y.numpy())
                ss.append(sources[i.numpy()])
        y = np.concatenate(ys) if ys else np.zeros(0)
        p = np.concatenate(ps) if ps else np.zeros(0)
        src = np.concatenate(ss) if ss else np.zeros(0, int)
        sums = [binary_sums(y, p)]
        if n_sources > 1:
            sums += [binary_sums(y[src == k], p[src == k]) for k in range(n_sources)]
        return np.concatenate(sums)

    return validate
