"""Speed of fakedetect's training loop and prediction pipeline against their references, in one run.

1. Frozen phase: seconds per epoch when the backbone runs every epoch, against features computed once.
2. Fine-tuning, images/s on the same tf.data stream (decode, augment, resize): Keras' own ``fit()`` (what
   fakedetect used before its tf.distribute loop), fakedetect's custom loop, and the loop on in-memory tensors of
   the same shape (the backbone's own forward+backward: the ceiling).
3. Prediction: `predict_raw` over N image files against the model's bare predict on in-memory tensors.

    python benchmarks/pipeline_speed.py [--per-class 2000] [--image-size 96] [--batch-size 64] [--steps 60]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import cifake_subset, machine, table


def timed_steps(step, iterator, n: int) -> float:
    """Images/s of ``n`` calls of ``step`` (after two warm-up calls that trace it)."""
    for _ in range(2):
        step(iterator)
    t = time.perf_counter()
    for _ in range(n):
        np.asarray(step(iterator))
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-class", type=int, default=2000, help="CIFAKE images per class for training timings")
    ap.add_argument("--predict-images", type=int, default=10000)
    ap.add_argument("--image-size", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=60, help="fine-tuning steps timed per variant")
    ap.add_argument("--backbone", default="efficientnet-lite0")
    args = ap.parse_args()

    import keras
    import tensorflow as tf

    from fakedetect.config import load_config
    from fakedetect.models import DROPOUT_LAYER, OUTPUT_LAYER
    from fakedetect.models.classifier import build_model, unfreeze
    from fakedetect.run import predict_raw
    from fakedetect.training.inputs import image_stream
    from fakedetect.training.loop import Loop, Recorder
    from fakedetect.training.validation import features

    split = cifake_subset(args.per_class)
    n = len(split)
    size, bs = args.image_size, args.batch_size
    cfg = load_config("cifake-cpu", {"image_size": size, "batch_size": bs, "backbone": args.backbone})
    strategy = tf.distribute.get_strategy()
    rows = []
    model = build_model(args.backbone, "imagenet", size)
    tmp = Path(tempfile.mkdtemp())
    loop = Loop(strategy, cfg, model, bs, np.ones(2, np.float32), Recorder(tmp, False), tmp, tmp, {})

    # 1. Frozen phase: the backbone recomputed every epoch against features computed once.
    stream, cached = image_stream(strategy, split, size, bs, cfg, 0)
    steps = n // bs
    opt = keras.optimizers.Adam(1e-3)
    opt.build(model.trainable_variables)
    it = iter(stream)
    recompute = timed_steps(loop._train_step(model, opt), it, steps)
    t = time.perf_counter()
    feats, labels, _ = features(model, split, size, bs)
    extract = time.perf_counter() - t
    inp = keras.Input((feats.shape[1],))
    head = keras.Model(inp, model.get_layer(OUTPUT_LAYER)(model.get_layer(DROPOUT_LAYER)(inp)))
    from fakedetect.training.inputs import feature_stream

    hopt = keras.optimizers.Adam(1e-3)
    hopt.build(head.trainable_variables)
    head_epoch = timed_steps(loop._train_step(head, hopt), iter(feature_stream(strategy, feats, labels, bs, 0)),
                             steps)
    rows.append({"measure": "frozen epoch, backbone recomputed (s)", "value": recompute})
    rows.append({"measure": "features computed once (s, one time)", "value": extract})
    rows.append({"measure": "frozen epoch on cached features (s)", "value": head_epoch})
    rows.append({"measure": "frozen epoch speed-up (x)", "value": recompute / head_epoch})

    # 2. Fine-tuning on the same stream: Keras fit() (the reference), the loop, the loop on in-memory tensors.
    unfreeze(model, cfg.unfreeze)
    from fakedetect.data.pipeline import build_stream

    ds = build_stream(split.paths, split.labels, size, bs, cfg.augment, 0, split.pillow_only, cache=cached)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=keras.losses.BinaryCrossentropy(),
                  metrics=[keras.metrics.BinaryAccuracy(name="accuracy")])
    model.fit(ds.take(2), epochs=1, verbose=0)
    t = time.perf_counter()
    model.fit(ds.take(args.steps), epochs=1, verbose=0)
    fit_ips = args.steps * bs / (time.perf_counter() - t)
    opt = keras.optimizers.Adam(1e-4)
    opt.build(model.trainable_variables)
    step = loop._train_step(model, opt)
    loop_ips = args.steps * bs / timed_steps(step, iter(stream), args.steps)
    x = np.random.default_rng(0).uniform(0, 255, (bs, size, size, 3)).astype("float32")
    y = np.random.default_rng(1).integers(0, 2, (bs,)).astype("float32")
    mem = strategy.distribute_datasets_from_function(
        lambda ctx: tf.data.Dataset.from_tensors((x, y)).repeat())
    ceil_ips = args.steps * bs / timed_steps(step, iter(mem), args.steps)
    rows.append({"measure": f"fine-tune images/s, Keras fit() on the stream (batch {bs})", "value": fit_ips})
    rows.append({"measure": "fine-tune images/s, fakedetect's tf.distribute loop on the stream", "value": loop_ips})
    rows.append({"measure": "loop against fit() (%)", "value": 100 * (loop_ips / fit_ips - 1)})
    rows.append({"measure": "fine-tune images/s, the loop on in-memory tensors (ceiling)", "value": ceil_ips})
    rows.append({"measure": "stream below the ceiling (%)", "value": 100 * (1 - loop_ips / ceil_ips)})

    # 3. Prediction over files against bare predict on tensors.
    pred_split = cifake_subset(args.predict_images // 2, seed=1)
    k = len(pred_split)
    predict_raw(model, pred_split.paths[:256], size, 128)
    t = time.perf_counter()
    predict_raw(model, pred_split.paths, size, 128, pred_split.pillow_only)
    files_ips = k / (time.perf_counter() - t)
    imgs = np.random.default_rng(2).uniform(0, 255, (512, size, size, 3)).astype("float32")
    reps = int(np.ceil(k / len(imgs)))
    model.predict(imgs[:128], batch_size=128, verbose=0)
    t = time.perf_counter()
    for _ in range(reps):
        model.predict(imgs, batch_size=128, verbose=0)
    bare_ips = reps * len(imgs) / (time.perf_counter() - t)
    rows.append({"measure": f"predict images/s over {k} files", "value": files_ips})
    rows.append({"measure": "bare model.predict images/s on tensors", "value": bare_ips})
    rows.append({"measure": "predict pipeline overhead (%)", "value": 100 * (1 - files_ips / bare_ips)})

    print(f"\npipeline speed, {dt.date.today()}, {machine()}, keras {keras.__version__}")
    print(f"{args.backbone} at {size} px, {n} CIFAKE training images, batch {bs}\n")
    print(table(rows, ["measure", "value"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
