"""The training data: found, checked and split once; then streamed to every replica, sharded by file before
decoding (each worker reads and decodes only its own share of the images)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fakedetect.config import TrainConfig
from fakedetect.data.archive import set_name
from fakedetect.data.layout import choose_split, discover, unique_names
from fakedetect.data.splits import Split, carve_validation, subsample, to_split
from fakedetect.errors import DataError
from fakedetect.framing import Framing
from fakedetect.training.cluster import num_workers

log = logging.getLogger(__name__)

CACHE_BYTES = 2 * 1024**3  # decoded training images are kept in memory up to this size (one machine only)


@dataclass
class Source:
    """One data set of a run: a folder or archive, its share of the training batches, an optional cap."""
    path: str
    weight: float = 1.0  # relative share of the training stream (sources are mixed by weight, not by size)
    max_per_class: int | None = None  # this source's cap (else the config's max_per_class)
    name: str = ""  # short name for tables and history columns (from the file name when empty)
    generators: list[str] | None = None  # what made its fakes (else generators.MANIFEST's, for the shared sets)


@dataclass
class DataSummary:
    """What a run trains on, from :func:`prepare_data`: the model card's ``data`` section (:meth:`to_dict`)."""
    data_root: str | list[str]  # the source's resolved path; with several, one per source
    train: dict[str, int]  # training images per class
    val: dict[str, int]  # validation images per class
    val_source: str  # where the validation images come from (a val folder, or the carve and its seed)
    skipped: int  # unreadable files left out (listed in the run folder)
    unused_splits: list[str]  # splits of the data that are not trained on (test/, ...); [] with several sources
    # What a resumed run reads its data from: every source with its weight, cap and name (a one-source run too:
    # a config's cap on its only source must hold on resume as well).
    spec: list[dict]
    sources: list[dict] = field(default_factory=list)  # several sources: the facts of each; [] with one

    def to_dict(self) -> dict:
        """The card's ``data`` section: every field, ``sources`` only with several sources."""
        out = {"data_root": self.data_root, "train": self.train, "val": self.val, "val_source": self.val_source,
               "skipped": self.skipped, "unused_splits": self.unused_splits}
        if self.sources:
            out["sources"] = self.sources
        out["spec"] = self.spec
        return out


def data_sources(data, cfg: TrainConfig) -> list[Source]:
    """The run's sources from ``data`` (a path, or a list of paths / ``{path, weight, max_per_class}`` mappings:
    repeated ``--data``, the config's ``data`` list, a resumed run's state), else from ``cfg.data``.

    Raises:
        DataError: no source at all.
    """
    entries = data if isinstance(data, list | tuple) else ([data] if data is not None else list(cfg.data or []))
    if not entries:
        raise DataError("no training data: give --data (once per source) or a `data:` list in the config")
    out = []
    for e in entries:
        src = Source(**e) if isinstance(e, dict) else Source(str(e))
        out.append(src)
    for src, name in zip(out, unique_names([s.name or set_name(s.path) for s in out]), strict=True):
        src.name = name
    resolved = [str(Path(s.path).resolve()) for s in out]
    twice = sorted({p for p in resolved if resolved.count(p) > 1})
    if twice:
        raise DataError(f"the same data given twice: {', '.join(twice)} (its validation images would be another "
                        "source's training images)")
    return out


def prepare_data(data, cfg: TrainConfig) -> tuple[Split, Split, DataSummary]:
    """Finds, subsamples, checks and splits every source (each carved on its own, stratified by class), then
    joins them. Returns (train, val, summary)."""
    sources = data_sources(data, cfg)
    trains, vals, facts = [], [], []
    for k, src in enumerate(sources):
        train, val, fact = _prepare_source(src, cfg, k)
        trains.append(train)
        vals.append(val)
        facts.append(fact)
    train, val = Split.join("train", trains), Split.join("val", vals)
    one = len(facts) == 1
    summary = DataSummary(
        data_root=facts[0]["path"] if one else [f["path"] for f in facts],
        train=train.counts(),
        val=val.counts(),
        val_source=facts[0]["val_source"] if one else "per source: see sources",
        skipped=len(train.skipped) + len(val.skipped),
        unused_splits=facts[0]["unused_splits"] if one else [],
        spec=[{"path": f["path"], "weight": s.weight, "max_per_class": s.max_per_class, "name": s.name,
               **({"generators": s.generators} if s.generators else {})}
              for f, s in zip(facts, sources, strict=True)],
        sources=[] if one else facts)
    return train, val, summary


def _prepare_source(src: Source, cfg: TrainConfig, k: int) -> tuple[Split, Split, dict]:
    layout = discover(src.path)
    # val/ and test/ are never trained on; besides them, train/ or the folder's only split is.
    train_name = choose_split({n: v for n, v in layout.items() if n not in ("val", "test")} or layout, "train",
                              src.path)
    caps = [c for c in (src.max_per_class, cfg.max_per_class) if c is not None]
    cap = min(caps) if caps else None  # the source's own cap, or the run's, whichever is smaller
    pool = to_split(train_name, subsample(layout[train_name], cap, cfg.seed + 17 * k))
    if "val" in layout:
        val = to_split("val", subsample(layout["val"], cap, cfg.seed + 1 + 17 * k))
        train = pool
        train.name = "train"
        val_source = "val folder"
    else:
        train, val = carve_validation(pool, cfg.val_fraction, cfg.seed + 17 * k)
        val_source = f"{cfg.val_fraction:.0%} of {train_name}, stratified, seed {cfg.seed + 17 * k}"
    fact = {"name": src.name, "path": str(Path(src.path).resolve()), "weight": src.weight,
            "max_per_class": src.max_per_class, "train": train.counts(), "val": val.counts(),
            "val_source": val_source, "unused_splits": sorted(n for n in layout if n not in (train_name, "val"))}
    return train, val, fact


def class_weights(split: Split, mode: str, mix: list[float] | None = None) -> np.ndarray:
    """Per-class loss weights [real, fake]: balanced when the classes differ by more than 10% (mode "auto"), as
    the training stream sees them (with several sources: each source's class shares, mixed by ``mix``)."""
    if mix is None:
        counts = np.bincount(np.asarray(split.labels), minlength=2).astype(np.float64)
    else:
        per_source = split.source_counts().astype(np.float64)
        counts = (per_source / per_source.sum(axis=1, keepdims=True).clip(min=1) * np.asarray(mix)[:, None]).sum(0)
    if mode == "none" or counts.min() >= 0.9 * counts.max():
        return np.ones(2, np.float32)
    return (counts.sum() / (2 * counts)).astype(np.float32)


def shard_of(split: Split, n_workers: int, index: int) -> Split:
    """The images of worker ``index`` of ``n_workers``: every n-th by position (for features and validation)."""
    return split if n_workers == 1 else split.take(range(index, len(split), n_workers))


def image_stream(strategy, split: Split, image_size: int | Framing, global_batch: int, cfg: TrainConfig, seed: int,
                 mix: list[float] | None = None):
    """The distributed, endless training stream of images: each input pipeline reads its shard of the files;
    several sources are drawn in the shares ``mix``."""
    import tensorflow as tf

    from fakedetect.data.pipeline import build_stream

    # Decoded images are cached in memory on one machine when they fit (CIFAKE: 100,000 x 32x32 = 0.3 GB).
    cache = num_workers(strategy) == 1 and 3 * sum(split.pixels) <= CACHE_BYTES

    def fn(ctx: tf.distribute.InputContext):
        per_replica = ctx.get_per_replica_batch_size(global_batch)
        return build_stream(split.paths, split.labels, image_size, per_replica, cfg.augment, seed,
                            split.pillow_only, shard=(ctx.num_input_pipelines, ctx.input_pipeline_id),
                            cache=cache and ctx.num_input_pipelines == 1, sources=split.sources, mix=mix,
                            mixup=cfg.mixup)

    return strategy.distribute_datasets_from_function(fn), cache


def feature_stream(strategy, features: np.ndarray, labels: np.ndarray, global_batch: int, seed: int,
                   sources: np.ndarray | None = None, mix: list[float] | None = None):
    """The distributed, endless stream of this worker's cached features (already its own shard); several
    sources are drawn in the shares ``mix``."""
    import tensorflow as tf

    from fakedetect.data.pipeline import mix_streams

    def items(positions):
        # One part of all items: the arrays themselves (a selection would copy them: 0.5 GB for CIFAKE).
        if len(positions) == len(features):
            return tf.data.Dataset.from_tensor_slices((features, labels))
        return tf.data.Dataset.from_tensor_slices((features[positions], labels[positions]))

    def fn(ctx: tf.distribute.InputContext):
        per_replica = ctx.get_per_replica_batch_size(global_batch)
        ds = mix_streams(items, len(features), sources, mix, seed)
        return ds.batch(per_replica, drop_remainder=True).prefetch(tf.data.AUTOTUNE)

    return strategy.distribute_datasets_from_function(fn)


def eval_batches(split: Split, image_size: int | Framing, batch_size: int):
    """(index, images, labels) batches of a split, in order, for a local forward pass."""
    from fakedetect.data.pipeline import build_dataset

    return build_dataset(split.paths, split.labels, image_size, batch_size, pillow_only=split.pillow_only)
