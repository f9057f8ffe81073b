"""The two phases of the recipe, built from what a training command shares (:class:`Setup`): the head on a
frozen backbone (on features computed once), then the top of the backbone fine-tuned on augmented images."""

from __future__ import annotations

import logging
import time

from fakedetect.data.splits import Split
from fakedetect.models import DROPOUT_LAYER, OUTPUT_LAYER
from fakedetect.training.cluster import num_workers, worker_index
from fakedetect.training.inputs import feature_stream, image_stream, shard_of
from fakedetect.training.loop import Loop, Phase
from fakedetect.training.schedules import epoch_sizes
from fakedetect.training.setup import Setup
from fakedetect.training.validation import features, validator

log = logging.getLogger(__name__)


def steps_per_epoch(s: Setup) -> tuple[int, int]:
    """(steps per epoch, warm-up steps): full global batches only, the same on every worker."""
    steps = max(1, len(s.train) // s.global_batch)
    warmup = s.cfg.warmup_steps if s.cfg.warmup_steps is not None else min(steps, 200) if s.lr_scale > 1 else 0
    return steps, warmup


def val_shard(s: Setup) -> Split:
    return shard_of(s.val, num_workers(s.strategy), worker_index(s.strategy))


def frozen_phase(s: Setup, loop: Loop) -> Phase:
    """Phase 1: the head on a frozen backbone, trained on features computed once (each worker: its shard)."""
    import keras

    cfg, strategy, model, size = s.cfg, s.strategy, loop.model, s.cfg.framing
    (steps, warmup), rate = steps_per_epoch(s), cfg.lr_frozen * s.lr_scale
    start = int(s.state.get("phase_epoch", 0))
    log.info(f"phase 1: backbone frozen, {cfg.epochs_frozen} epoch(s), lr {rate:g}"
             + (f" (resuming after epoch {start})" if s.resume and start else ""))
    if not cfg.cache_features:
        return Phase("frozen", model,
                     lambda seed, n: image_stream(strategy, s.train, size, loop.global_batch, cfg, cfg.seed + seed,
                                                  s.mix)[0],
                     validator(model, val_shard(s), size, cfg.batch_size, n_sources=s.n_sources),
                     cfg.epochs_frozen, rate, steps, warmup, [size.size] * cfg.epochs_frozen)
    if cfg.mixup:
        log.info("  mixup applies to the fine-tuning images, not to the frozen phase's cached features")
    if size.cropped and size.combine == "max":
        log.info("  the frozen phase's cached features are the mean of each image's crops: its validation scores "
                 "the mean of the crops' logits, fine-tuning and scoring their max")
    t0 = time.perf_counter()
    shard = shard_of(s.train, num_workers(strategy), worker_index(strategy))
    f_train, y_train, src_train = features(model, shard, size, cfg.batch_size, "training images")
    f_val, y_val, src_val = features(model, val_shard(s), size, cfg.batch_size, "validation images")
    log.info(f"  features computed once for {len(f_train) + len(f_val)} images "
             f"({time.perf_counter() - t0:.0f}s); the frozen epochs train the head on them")
    with strategy.scope():
        inp = keras.Input((f_train.shape[1],), name="features")
        head = keras.Model(inp, model.get_layer(OUTPUT_LAYER)(model.get_layer(DROPOUT_LAYER)(inp)), name="head")
    return Phase("frozen", head,
                 lambda seed, _: feature_stream(strategy, f_train, y_train, loop.global_batch, cfg.seed + seed,
                                                src_train, s.mix),
                 validator(head, None, size, cfg.batch_size, features=(f_val, y_val, src_val),
                           n_sources=s.n_sources),
                 cfg.epochs_frozen, rate, steps, warmup, [size.size] * cfg.epochs_frozen)


def finetune_phase(s: Setup, loop: Loop) -> Phase:
    """Phase 2: the top of the backbone and the head, on augmented images (optionally growing in size)."""
    from fakedetect.models.classifier import any_size_view, unfreeze

    cfg, strategy, model, fr = s.cfg, s.strategy, loop.model, s.cfg.framing
    size = fr.size
    (steps, warmup), rate = steps_per_epoch(s), cfg.lr_finetune * s.lr_scale
    sizes = epoch_sizes(size, cfg.epochs_finetune, cfg.finetune_sizes)
    with strategy.scope():
        names = unfreeze(model, cfg.unfreeze, batchnorm=cfg.train_batchnorm)
        # Progressive resizing trains the same layers at other sizes; validation stays at the model's size.
        trained = model if set(sizes) == {size} else any_size_view(model)
    start = int(loop.state.get("phase_epoch", 0)) if loop.state.get("phase") == "finetune" else 0
    log.info(f"phase 2: fine-tuning {len(names)} backbone layer(s) with weights "
             f"({'BatchNorm trained, batch statistics' if cfg.train_batchnorm else 'BatchNorm frozen'}), "
             f"{cfg.epochs_finetune} epoch(s), lr {rate:g}"
             + (f", image sizes {sizes}" if trained is not model else "")
             + (f", {cfg.schedule} schedule" if cfg.schedule != "plateau" else "")
             + (f" (resuming after epoch {loop.epochs_done})" if s.resume and start else ""))
    return Phase("finetune", trained,
                 lambda seed, n: image_stream(strategy, s.train, fr if n == size else n, loop.global_batch, cfg,
                                              cfg.seed + 1000 + seed, s.mix)[0],
                 validator(model, val_shard(s), fr, cfg.batch_size, n_sources=s.n_sources),
                 cfg.epochs_finetune, rate, steps, warmup, sizes)
