"""What the domain check costs predict: images/s of the plain model against the scoring path with the domain
distance (the feature taps' spatial means in the same forward pass, then one product per depth and image).

Both read the same files through the same tf.data pipeline, batch 64, after a warm-up pass; best of 3.

    python benchmarks/domain_cost.py RUN [--images 2000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

import numpy as np
from common import cifake_subset, machine, table


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--images", type=int, default=2000)
    args = ap.parse_args()

    import tensorflow as tf

    from fakedetect.data.pipeline import build_dataset
    from fakedetect.run import load_run, scoring_function

    run = load_run(args.run)
    split = cifake_subset(args.images // 2, seed=3)
    ds = build_dataset(split.paths, None, run.image_size, 64, pillow_only=split.pillow_only).cache()
    plain = tf.function(lambda x: run.model(x, training=False), reduce_retracing=True)
    scoring = scoring_function(run.model)

    def plain_pass():
        for _, x in ds:
            np.asarray(plain(x))

    def domain_pass():
        for _, x in ds:
            p, feats = scoring(x)
            np.asarray(p)
            run.domain.distance([np.asarray(f) for f in feats])

    rows = []
    for name, fn in (("model only", plain_pass), ("model + domain check", domain_pass)):
        fn()  # trace, fill the cache
        best = min(_timed(fn) for _ in range(3))
        rows.append({"path": name, "images/s": len(split) / best})
    rows[1]["cost"] = f"{1 - rows[1]['images/s'] / rows[0]['images/s']:.1%}"
    print(f"\ndomain check cost, {dt.date.today()}, {machine()}")
    print(f"run {args.run} ({run.card.backbone} at {run.image_size} px, {len(run.domain.depths)} depths), "
          f"{len(split)} CIFAKE images decoded once (cached), batch 64\n")
    print(table(rows, ["path", "images/s", "cost"]))
    return 0


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


if __name__ == "__main__":
    sys.exit(main())
