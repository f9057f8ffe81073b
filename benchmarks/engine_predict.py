"""Issue 25: `predict`'s throughput on each scoring engine, split by stage, on one run and the same images.

Stages, each timed on its own over the same N CIFAKE images (best of --repeats):
- checks: ``check_images`` (Pillow opens and decodes every file; the same for both engines);
- decode: the tf.data pipeline alone (read, decode, frame, batch) with no model (the same for both engines);
- model: the scoring function over the decoded batches, held in memory (TensorFlow's tf.function, or ONNX Runtime
  on the run's graph);
- domain: the domain model's distances from the features (numpy, the same for both);
- end to end: ``predict_paths`` as `fakedetect predict` runs it (checks, then decode and model overlapped by
  tf.data, then the domain check), graph already made (its one-off conversion is timed apart).

    python benchmarks/engine_predict.py RUN_DIR [--images 10000] [--batch-size 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time

import numpy as np
from common import cifake_subset, machine, table


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from fakedetect.data.checks import check_images
    from fakedetect.data.pipeline import build_dataset
    from fakedetect.engine import ort_threads
    from fakedetect.predict import predict_paths
    from fakedetect.run import load_run, scoring_function

    split = cifake_subset(args.images // 2)
    paths = list(split.paths)
    n = len(paths)
    tf_run = load_run(args.run_dir, "tensorflow")
    fr = tf_run.framing
    t = time.perf_counter()
    ort_run = load_run(args.run_dir, "onnxruntime")
    ort_run.onnx.graph(False, fr)
    convert_s = time.perf_counter() - t

    checks = best(lambda: check_images(paths, tf_verify=True, what="files"), 1)
    ds = build_dataset(paths, None, fr, args.batch_size, pillow_only=list(split.pillow_only))
    decode = best(lambda: [None for _ in ds], args.repeats)
    batches = [b for _, b in ds]
    rows = []
    for run in (tf_run, ort_run):
        fn = scoring_function(run.network, False, fr)
        fn(batches[0])  # trace / first session run

        def model(fn=fn):
            return [fn(b) for b in batches]

        m = best(model, args.repeats)
        feats = [[np.asarray(f) for f in out[1]] for out in model()]
        dom = best(lambda run=run, feats=feats: [run.domain.distance(f) for f in feats], args.repeats) \
            if run.domain else 0.0
        end = best(lambda run=run: predict_paths(run, paths, args.batch_size), 1)
        rows.append({"engine": run.engine, "checks s": checks, "decode s": decode, "model s": m, "domain s": dom,
                     "model images/s": n / m, "end to end s": end, "predict images/s": n / end})
    ratio = {k: rows[0][k] / rows[1][k] for k in ("model s", "end to end s")}
    print(f"\npredict on each engine, {dt.date.today()}, {machine()}; run {os.path.abspath(args.run_dir)} "
          f"({tf_run.card.backbone}, {fr.describe()}); {n} CIFAKE images, batch {args.batch_size}, best of "
          f"{args.repeats} (checks and end to end: 1); ONNX Runtime {ort_threads()} intra-op threads; graph made "
          f"once in {convert_s:.1f} s\n")
    print(table(rows, list(rows[0])))
    print(f"\nONNX Runtime / TensorFlow: model stage {ratio['model s']:.2f}x, predict end to end "
          f"{ratio['end to end s']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
