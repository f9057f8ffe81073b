"""Fine-tuning speed of backbone x input size x unfrozen range: images/s of fakedetect's training step.

What an epoch of a recipe costs before spending an hour on it (issue 13: Lite1 against Lite0 at equal time,
larger inputs, fewer unfrozen blocks). The step is the training loop's own (forward, backward, Adam update;
batch 64 unless a variant names another) on in-memory tensors, so the figures are the backbone's ceiling; an epoch
of the real stream adds decoding, augmentation and validation (CIFAKE's real epochs at 96 px took 545-633 s in
RESULTS.md, against 465-600 s from this step alone).

    python benchmarks/finetune_speed.py [efficientnet-lite0:96:block1 efficientnet-lite1:96:block1:128 ...]

Each variant is backbone:px:unfrozen-from, with an optional :batch (64 when left out).
"""

from __future__ import annotations

import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import machine, table

DEFAULT = ["efficientnet-lite0:96:block1", "efficientnet-lite0:96:block2", "efficientnet-lite0:96:block3",
           "efficientnet-lite1:96:block1", "efficientnet-lite0:112:block1", "efficientnet-lite0:128:block1"]
BATCH, IMAGES, EPOCH = 64, 1920, 90_000  # default batch; images timed per variant; CIFAKE's training carve


def parse(variant: str) -> tuple[str, str, int, str, int] | None:
    """(variant, backbone, px, unfrozen-from, batch) from ``backbone:px:unfrozen-from[:batch]``; None if malformed."""
    fields = variant.split(":")
    if len(fields) not in (3, 4) or not all(f.isdigit() and int(f) > 0 for f in fields[1:2] + fields[3:]):
        return None
    return variant, fields[0], int(fields[1]), fields[2], int(fields[3]) if len(fields) == 4 else BATCH


def main() -> int:
    given = sys.argv[1:] or DEFAULT
    variants = [parse(v) for v in given]
    if None in variants:
        bad = [v for v, parsed in zip(given, variants, strict=True) if parsed is None]
        print(f"not backbone:px:unfrozen-from[:batch] with positive whole numbers: {' '.join(bad)}", file=sys.stderr)
        return 2
    import keras
    import tensorflow as tf

    from fakedetect.config import load_config
    from fakedetect.models.classifier import build_model, unfreeze
    from fakedetect.training.loop import Loop, Recorder

    strategy = tf.distribute.get_strategy()
    scratch = tempfile.TemporaryDirectory()  # the loop's run folder: nothing is written to it here
    rows = []
    for variant, backbone, size, top, batch in variants:
        steps = max(IMAGES // batch, 5)
        cfg = load_config("cifake-cpu", {"image_size": size, "backbone": backbone, "unfreeze": top})
        model = build_model(backbone, "imagenet", size, cfg.dropout, cfg.stochastic_depth)
        tmp = Path(scratch.name)
        loop = Loop(strategy, cfg, model, batch, np.ones(2, np.float32), Recorder(tmp, False), tmp, tmp, {})
        unfreeze(model, top)
        opt = keras.optimizers.Adam(1e-4)
        opt.build(model.trainable_variables)
        step = loop._train_step(model, opt)
        x = np.random.default_rng(0).uniform(0, 255, (batch, size, size, 3)).astype("float32")
        y = np.random.default_rng(1).integers(0, 2, (batch,)).astype("float32")
        it = iter(strategy.distribute_datasets_from_function(
            lambda ctx, x=x, y=y: tf.data.Dataset.from_tensors((x, y)).repeat()))
        for _ in range(3):  # tracing
            np.asarray(step(it))
        t = time.perf_counter()
        for _ in range(steps):
            np.asarray(step(it))
        ips = steps * batch / (time.perf_counter() - t)
        rows.append({"backbone": backbone, "px": size, "unfrozen from": top, "batch": batch, "images/s": ips,
                     "s per 90,000-image epoch": EPOCH / ips})
        print(f"  {variant}: {ips:.1f} images/s", flush=True)
    print(f"\nfine-tuning speed, {dt.date.today()}, {machine()}, keras {keras.__version__}\n")
    print(table(rows, ["backbone", "px", "unfrozen from", "batch", "images/s", "s per 90,000-image epoch"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
