"""The training data: found, checked and split once; then streamed to every replica, sharded by file before
decoding (each worker reads and decodes only its own share of the images)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from fakedetect.config import TrainConfig
from fakedetect.data.layout import choose_split, discover
from fakedetect.data.splits import Split, carve_validation, subsample, to_split
from fakedetect.training.cluster import num_workers

log = logging.getLogger(__name__)

CACHE_BYTES = 2 * 1024**3  # decoded training images are kept in memory up to this size (one machine only)


def prepare_data(data_root: str | Path, cfg: TrainConfig) -> tuple[Split, Split, dict]:
    """Finds, subsamples, checks and splits the data. Returns (train, val, summary)."""
    layout = discover(data_root)
    # val/ and test/ are never trained on; besides them, train/ or the folder's only split is.
    train_name = choose_split({k: v for k, v in layout.items() if k not in ("val", "test")} or layout, "train",
                              data_root)

    files = subsample(layout[train_name], cfg.max_per_class, cfg.seed)
    pool = to_split(train_name, files)
    if "val" in layout:
        val = to_split("val", subsample(layout["val"], cfg.max_per_class, cfg.seed + 1))
        train = pool
        train.name = "train"
        val_source = "val folder"
    else:
        train, val = carve_validation(pool, cfg.val_fraction, cfg.seed)
        val_source = f"{cfg.val_fraction:.0%} of {train_name}, stratified, seed {cfg.seed}"
    summary = {
        "data_root": str(Path(data_root).resolve()),
        "train": train.counts(),
        "val": val.counts(),
        "val_source": val_source,
        "skipped": len(train.skipped) + len(val.skipped),
        "unused_splits": sorted(s for s in layout if s not in (train_name, "val")),
    }
    return train, val, summary


def class_weights(split: Split, mode: str) -> np.ndarray:
    """Per-class loss weights [real, fake]: balanced when the classes differ by more than 10% (mode "auto")."""
    counts = np.bincount(np.asarray(split.labels), minlength=2)
    if mode == "none" or counts.min() >= 0.9 * counts.max():
        return np.ones(2, np.float32)
    return (counts.sum() / (2 * counts)).astype(np.float32)


def shard_of(split: Split, n_workers: int, index: int) -> Split:
    """The images of worker ``index`` of ``n_workers``: every n-th by position (for features and validation)."""
    return split if n_workers == 1 else split.take(range(index, len(split), n_workers))


def image_stream(strategy, split: Split, image_size: int, global_batch: int, cfg: TrainConfig, seed: int):
    """The distributed, endless training stream of images: each input pipeline reads its shard of the files."""
    import tensorflow as tf

    from fakedetect.data.pipeline import build_stream

    # Decoded images are cached in memory on one machine when they fit (CIFAKE: 100,000 x 32x32 = 0.3 GB).
    cache = num_workers(strategy) == 1 and 3 * sum(split.pixels) <= CACHE_BYTES

    def fn(ctx: tf.distribute.InputContext):
        per_replica = ctx.get_per_replica_batch_size(global_batch)
        return build_stream(split.paths, split.labels, image_size, per_replica, cfg.augment, seed,
                            split.pillow_only, shard=(ctx.num_input_pipelines, ctx.input_pipeline_id),
                            cache=cache and ctx.num_input_pipelines == 1)

    return strategy.distribute_datasets_from_function(fn), cache


def feature_stream(strategy, features: np.ndarray, labels: np.ndarray, global_batch: int, seed: int):
    """The distributed, endless stream of this worker's cached features (already its own shard)."""
    import tensorflow as tf

    def fn(ctx: tf.distribute.InputContext):
        per_replica = ctx.get_per_replica_batch_size(global_batch)
        ds = tf.data.Dataset.from_tensor_slices((features, labels))
        ds = ds.shuffle(len(features), seed=seed, reshuffle_each_iteration=True).repeat()
        return ds.batch(per_replica, drop_remainder=True).prefetch(tf.data.AUTOTUNE)

    return strategy.distribute_datasets_from_function(fn)


def eval_batches(split: Split, image_size: int, batch_size: int):
    """(index, images, labels) batches of a split, in order, for a local forward pass."""
    from fakedetect.data.pipeline import build_dataset

    return build_dataset(split.paths, split.labels, image_size, batch_size, pillow_only=split.pillow_only)
