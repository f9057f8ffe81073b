"""Speed of fakedetect's training and prediction pipelines against their ceilings, in one run.

1. Frozen phase: seconds per epoch when the backbone runs every epoch, against features computed once.
2. Fine-tuning: images/s of fit() on the real tf.data pipeline (decode, augment, resize) against fit() on
   in-memory tensors of the same shape and batch size (the backbone's own forward+backward: the ceiling).
3. Prediction: `predict_paths` over N image files against the model's bare predict on in-memory tensors.

    python benchmarks/pipeline_speed.py [--per-class 2000] [--image-size 96] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time

import numpy as np
from common import cifake_subset, machine, table


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-class", type=int, default=2000, help="CIFAKE images per class for training timings")
    ap.add_argument("--predict-images", type=int, default=10000)
    ap.add_argument("--image-size", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--backbone", default="efficientnet-lite0")
    args = ap.parse_args()

    import keras
    import tensorflow as tf

    from fakedetect.config import load_config
    from fakedetect.inference import Run, predict_raw
    from fakedetect.model import build_model, compile_model, unfreeze
    from fakedetect.pipeline import build_dataset
    from fakedetect.train import CACHE_BYTES, head_on_features

    split = cifake_subset(args.per_class)
    n = len(split)
    size, bs = args.image_size, args.batch_size
    cfg = load_config("cifake-cpu", {"image_size": size, "batch_size": bs, "backbone": args.backbone})
    rows = []

    # 1. Frozen phase.
    model = build_model(args.backbone, "imagenet", size)
    # As `fakedetect train` builds it (decoded images cached in memory when they fit).
    ds = build_dataset(split.paths, split.labels, size, bs, training=True, augment=cfg.augment, seed=0,
                       pillow_only=split.pillow_only, cache=3 * sum(split.pixels) <= CACHE_BYTES)
    compile_model(model, 1e-3)
    model.fit(ds.take(2), epochs=1, verbose=0)  # warm-up (tracing)
    t = time.perf_counter()
    model.fit(ds, epochs=1, verbose=0)
    recompute = time.perf_counter() - t
    t = time.perf_counter()
    opts = tf.data.Options()
    head, f_train, _ = head_on_features(model, split, split, size, bs, 0, opts)
    extract = time.perf_counter() - t
    compile_model(head, 1e-3)
    head.fit(f_train.take(2), epochs=1, verbose=0)
    t = time.perf_counter()
    head.fit(f_train, epochs=1, verbose=0)
    head_epoch = time.perf_counter() - t
    rows.append({"measure": "frozen epoch, backbone recomputed (s)", "value": recompute})
    rows.append({"measure": "features computed once (s, one time)", "value": extract / 2})
    rows.append({"measure": "frozen epoch on cached features (s)", "value": head_epoch})
    rows.append({"measure": "frozen epoch speed-up (x)", "value": recompute / head_epoch})

    # 2. Fine-tuning: real pipeline against in-memory tensors.
    unfreeze(model, cfg.unfreeze)
    compile_model(model, 1e-4)
    steps = 60
    model.fit(ds.take(2), epochs=1, verbose=0)
    t = time.perf_counter()
    model.fit(ds.repeat().take(steps), epochs=1, verbose=0)
    real_ips = steps * bs / (time.perf_counter() - t)
    x = np.random.default_rng(0).uniform(0, 255, (bs, size, size, 3)).astype("float32")
    y = np.random.default_rng(1).integers(0, 2, (bs,)).astype("float32")  # as the pipeline yields them
    mem = tf.data.Dataset.from_tensor_slices((x, y)).batch(bs).repeat(steps)  # same element spec as `ds`
    model.fit(mem.take(2), epochs=1, verbose=0)
    t = time.perf_counter()
    model.fit(mem, epochs=1, verbose=0)
    ceil_ips = steps * bs / (time.perf_counter() - t)
    rows.append({"measure": f"fine-tune images/s, tf.data pipeline (batch {bs})", "value": real_ips})
    rows.append({"measure": "fine-tune images/s, in-memory tensors (ceiling)", "value": ceil_ips})
    rows.append({"measure": "fine-tune pipeline below ceiling (%)", "value": 100 * (1 - real_ips / ceil_ips)})

    # 3. Prediction over files against bare predict on tensors.
    pred_split = cifake_subset(args.predict_images // 2, seed=1)
    k = len(pred_split)
    run = Run(path=None, model=model, card={"image_size": size, "threshold": 0.5})
    predict_raw(model, pred_split.paths[:256], size, 128)
    t = time.perf_counter()
    predict_raw(model, pred_split.paths, size, 128, pred_split.pillow_only)
    files_ips = k / (time.perf_counter() - t)
    imgs = np.stack([b.numpy() for b in build_dataset(pred_split.paths[:512], None, size, 512)])[0]
    reps = int(np.ceil(k / len(imgs)))
    model.predict(imgs[:128], batch_size=128, verbose=0)
    t = time.perf_counter()
    for _ in range(reps):
        model.predict(imgs, batch_size=128, verbose=0)
    bare_ips = reps * len(imgs) / (time.perf_counter() - t)
    del run
    rows.append({"measure": f"predict images/s over {k} files", "value": files_ips})
    rows.append({"measure": "bare model.predict images/s on tensors", "value": bare_ips})
    rows.append({"measure": "predict pipeline overhead (%)", "value": 100 * (1 - files_ips / bare_ips)})

    print(f"\npipeline speed, {dt.date.today()}, {machine()}, keras {keras.__version__}")
    print(f"{args.backbone} at {size} px, {n} CIFAKE training images, batch {bs}\n")
    print(table(rows, ["measure", "value"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
