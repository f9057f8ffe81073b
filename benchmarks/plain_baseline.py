"""fakedetect against the plain recipe, same data, same backbone, same machine, one run.

The plain recipe is the one most notebooks use: keras.utils.image_dataset_from_directory, augmentation layers
inside the model, and the backbone recomputed every epoch, frozen and then fine-tuned. fakedetect: its tf.data
pipeline, features computed once for the frozen phase, same epochs, same learning rates.

    python benchmarks/plain_baseline.py [--per-class 2000] [--image-size 96]
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


def layout(split, root: Path, val_fraction=0.1, seed=0) -> Path:
    """train/ and val/ folders of symlinks (stratified), for both recipes to read."""
    from fakedetect import CLASS_NAMES
    from fakedetect.data.splits import carve_validation

    tr, va = carve_validation(split, val_fraction, seed)
    for name, s in (("train", tr), ("val", va)):
        for i, (p, y) in enumerate(zip(s.paths, s.labels, strict=True)):
            d = root / name / CLASS_NAMES[y]
            d.mkdir(parents=True, exist_ok=True)
            (d / f"{i}.jpg").symlink_to(Path(p).resolve())
    return root


def plain(root: Path, size: int, bs: int, epochs: tuple[int, int], cfg) -> dict:
    import keras
    from sklearn.metrics import roc_auc_score

    from fakedetect.models.classifier import unfreeze
    from fakedetect.models.registry import build_backbone

    kw = dict(class_names=["real", "fake"], label_mode="binary", image_size=(size, size), batch_size=bs, seed=0)
    train = keras.utils.image_dataset_from_directory(root / "train", shuffle=True, **kw)
    val = keras.utils.image_dataset_from_directory(root / "val", shuffle=False, **kw)
    base = build_backbone(cfg.backbone, "imagenet", size)
    base.name = "backbone"
    base.trainable = False
    inputs = keras.Input((size, size, 3))
    x = keras.Sequential([keras.layers.RandomFlip("horizontal"), keras.layers.RandomZoom(cfg.augment.zoom)])(inputs)
    x = base(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(cfg.dropout)(x)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))
    times = []
    for phase, (n, lr) in enumerate(((epochs[0], cfg.lr_frozen), (epochs[1], cfg.lr_finetune))):
        if phase == 1:
            unfreeze(model, cfg.unfreeze)
        model.compile(keras.optimizers.Adam(lr), "binary_crossentropy", metrics=["accuracy"])
        for _ in range(n):
            t = time.perf_counter()
            model.fit(train, validation_data=val, epochs=1, verbose=0)
            times.append(time.perf_counter() - t)
    y = np.concatenate([yb.numpy() for _, yb in val]).ravel()
    p = model.predict(val, verbose=0).ravel()
    return {"times": times, "accuracy": float(((p >= 0.5) == y).mean()), "auc": float(roc_auc_score(y, p))}


def ours(root: Path, cfg, out: Path) -> dict:
    import pandas as pd

    from fakedetect.training import train

    t = time.perf_counter()
    res = train(root, cfg, out)
    total = time.perf_counter() - t
    hist = pd.read_csv(out / "history.csv")
    m = res.val_metrics["at_0.5"]
    return {"times": list(hist["seconds"]), "total": total, "accuracy": m["accuracy"], "auc": m["roc_auc"]}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-class", type=int, default=2000)
    ap.add_argument("--image-size", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--epochs-frozen", type=int, default=2)
    ap.add_argument("--epochs-finetune", type=int, default=1)
    args = ap.parse_args()
    from fakedetect.config import load_config

    cfg = load_config("cifake-cpu", {"image_size": args.image_size, "batch_size": args.batch_size,
                                     "epochs_frozen": args.epochs_frozen, "epochs_finetune": args.epochs_finetune,
                                     "early_stopping_patience": 99})
    work = Path(tempfile.mkdtemp(prefix="plain-vs-fakedetect-"))
    root = layout(cifake_subset(args.per_class, seed=2), work / "data")
    t = time.perf_counter()
    p = plain(root, args.image_size, args.batch_size, (args.epochs_frozen, args.epochs_finetune), cfg)
    p["total"] = time.perf_counter() - t
    o = ours(root, cfg, work / "run")
    nf = args.epochs_frozen
    rows = []
    for name, r in (("plain (image_dataset_from_directory, recomputed)", p), ("fakedetect", o)):
        rows.append({"recipe": name, "frozen s/epoch": float(np.mean(r["times"][:nf])),
                     "fine-tune s/epoch": float(np.mean(r["times"][nf:])) if len(r["times"]) > nf else "",
                     "total s": r["total"], "val accuracy@0.5": r["accuracy"], "val AUC": r["auc"]})
    print(f"\nplain recipe vs fakedetect, {dt.date.today()}, {machine()}")
    print(f"{cfg.backbone} at {args.image_size} px, {2 * args.per_class} CIFAKE images (10% validation), "
          f"batch {args.batch_size}, {nf} frozen + {args.epochs_finetune} fine-tuning epoch(s)\n")
    print(table(rows, ["recipe", "frozen s/epoch", "fine-tune s/epoch", "total s", "val accuracy@0.5", "val AUC"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
