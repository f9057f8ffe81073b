"""Additive validation and training sums: summed across workers with one collective, then turned into
metrics once, so that every worker takes the same decisions."""

from __future__ import annotations

import hashlib

import numpy as np

from fakedetect.training.cluster import num_workers

AUC_BINS = 1000  # validation AUC from score histograms: exact up to ties within 0.001


def all_reduce_sum(strategy, values: np.ndarray) -> np.ndarray:
    """Sums a vector across workers (one collective; every worker must call it the same number of times)."""
    if num_workers(strategy) == 1:
        return values  # the replicas of one machine share this process: its values are already global
    import tensorflow as tf

    local = strategy.num_replicas_in_sync // num_workers(strategy)
    part = tf.constant(np.asarray(values, np.float64) / local)
    per_replica = strategy.experimental_distribute_values_from_function(lambda ctx: part)
    return np.asarray(strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None), np.float64)


def binary_sums(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """[loss sum, count, correct at 0.5, histogram of fake scores, histogram of real scores]: additive, so
    they can be summed across workers and turned into metrics once."""
    p = p.astype(np.float64)
    y = y.astype(np.float64)
    finite = np.isfinite(p)  # a diverged model's NaN makes the loss NaN (reported), never a crash
    p = np.clip(np.where(finite, p, 0.5), 1e-7, 1 - 1e-7)
    loss = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    loss = np.where(finite, loss, np.nan)
    bins = np.minimum((p * AUC_BINS).astype(int), AUC_BINS - 1)
    pos = np.bincount(bins[(y == 1) & finite], minlength=AUC_BINS)
    neg = np.bincount(bins[(y == 0) & finite], minlength=AUC_BINS)
    return np.concatenate([[loss.sum(), len(y), ((p >= 0.5) == (y == 1)).sum()], pos, neg])


def sums_to_metrics(s: np.ndarray) -> dict:
    loss, n, correct = s[:3]
    pos, neg = s[3:3 + AUC_BINS], s[3 + AUC_BINS:]
    n_pos, n_neg = pos.sum(), neg.sum()
    auc = float("nan")
    if n_pos and n_neg:
        above = np.cumsum(pos[::-1])[::-1] - pos  # positives in higher bins
        auc = float((neg * (above + 0.5 * pos)).sum() / (n_pos * n_neg))
    return {"loss": float(loss / n) if n else float("nan"), "accuracy": float(correct / n) if n else float("nan"),
            "auc": auc}


def weights_digest(model) -> str:
    """A checksum of every weight: equal on every worker when they are in sync."""
    h = hashlib.sha1()
    for w in model.weights:
        h.update(np.ascontiguousarray(np.asarray(w.numpy(), np.float32)).tobytes())
    return h.hexdigest()[:16]
