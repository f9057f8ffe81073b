"""Issue 25: what the changes of preprocessing move in P(fake) on real images, apart from the engine's difference.

Three differences, each alone, on the JPEG files of the held-out faces and sd-coco parts (photos and generated
images), scored by one run:

1. decode: TensorFlow's default fast IDCT (what fakedetect decoded with before) against the accurate IDCT (what
   the pipeline and Pillow decode with now); TensorFlow framing and engine for both;
2. framing: TensorFlow's resize or crops against ``fakedetect.pixels`` (numpy, what a `serve` worker on ONNX
   Runtime uses); the same decoded pixels, TensorFlow engine;
3. engine: TensorFlow against ONNX Runtime; the same framed pixels;
4. (resize mode) the web app's downscale variant: shrunk to 75%, resized back and rounded to 8 bits, then framed
   (before), against the three resizes composed without the rounding (one product on ONNX Runtime); both in
   TensorFlow, from the variant's source (the upload, or its copy of at most 1024 px): on every image, and as
   `serve` applies it (composed only for images at least COMPOSE_MIN_SHRINK times the input on their shorter side).

    python benchmarks/engine_preprocessing.py RUN_DIR [--per-set 200]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

import numpy as np
from common import HERE, machine, table


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--per-set", type=int, default=200)
    args = ap.parse_args()

    import tensorflow as tf

    from fakedetect.data.pipeline import decode_bytes, frame
    from fakedetect.run import load_run, scoring_function

    data = HERE.parent / "runs" / "issue12" / "data"
    files = []
    for name in ("faces", "sd-coco"):
        found = sorted(p for p in (data / name / "test").rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
        files += found[:: max(1, len(found) // args.per_set)][:args.per_set]
    tf_run, ort_run = load_run(args.run_dir, "tensorflow"), load_run(args.run_dir, "onnxruntime")
    fr = tf_run.framing
    tf_fn, ort_fn = scoring_function(tf_run.model, False, fr), scoring_function(ort_run.network, False, fr)
    from fakedetect.data.transforms import downscale, downscale_framed
    from fakedetect.run import framed
    from fakedetect.web.service import COMPOSE_MIN_SHRINK, variant_source

    p = {k: [] for k in ("fast decode", "accurate decode", "numpy framing", "onnxruntime", "variant rounded",
                         "variant composed", "variant as served")}
    pixel_diff, n_big = [], 0
    for f in files:
        data_bytes = f.read_bytes()
        fast = tf.io.decode_jpeg(data_bytes, channels=3).numpy()  # TensorFlow's default: the fast IDCT
        accurate = decode_bytes(tf.constant(data_bytes)).numpy()
        pixel_diff.append(np.abs(fast.astype(int) - accurate).max())
        x_fast, x_acc = frame(tf.constant(fast), fr).numpy(), frame(tf.constant(accurate), fr).numpy()
        x_np = framed(accurate, fr, numpy=True)
        p["fast decode"].append(float(np.asarray(tf_fn(x_fast[None])[0]).reshape(-1)[0]))
        p["accurate decode"].append(float(np.asarray(tf_fn(x_acc[None])[0]).reshape(-1)[0]))
        p["numpy framing"].append(float(np.asarray(tf_fn(x_np[None])[0]).reshape(-1)[0]))
        p["onnxruntime"].append(float(np.asarray(ort_fn(x_acc[None])[0]).reshape(-1)[0]))
        if not fr.cropped:
            src = tf.constant(variant_source(accurate, fr.size))
            x_round = frame(downscale(0.75)(src), fr).numpy()
            x_comp = downscale_framed(0.75, fr.size)(src).numpy()
            p["variant rounded"].append(float(np.asarray(tf_fn(x_round[None])[0]).reshape(-1)[0]))
            p["variant composed"].append(float(np.asarray(tf_fn(x_comp[None])[0]).reshape(-1)[0]))
            big = min(src.shape[:2]) >= COMPOSE_MIN_SHRINK * fr.size
            p["variant as served"].append(p["variant composed" if big else "variant rounded"][-1])
            n_big += big
    p = {k: tf_run.calibrate(np.array(v)) if v else np.array(v) for k, v in p.items()}
    t = tf_run.threshold
    rows = []
    for what, a, b in (("decode: fast IDCT -> accurate", "fast decode", "accurate decode"),
                       ("framing: TensorFlow -> numpy", "accurate decode", "numpy framing"),
                       ("engine: TensorFlow -> ONNX Runtime", "accurate decode", "onnxruntime"),
                       ("downscale variant: rounded round trip -> composed", "variant rounded", "variant composed"),
                       (f"the same as served ({n_big} composed)", "variant rounded", "variant as served")):
        if not len(p[a]):
            continue
        d = np.abs(p[a] - p[b])
        rows.append({"difference": what, "images": len(d), "max |dP(fake)|": float(d.max()),
                     "mean": float(d.mean()), "99th percentile": float(np.quantile(d, 0.99)),
                     "labels flipped": int(((p[a] >= t) != (p[b] >= t)).sum())})
    print(f"\npreprocessing and engine differences, {dt.date.today()}, {machine()}; run "
          f"{Path(args.run_dir).resolve()} ({fr.describe()}); {len(files)} JPEG files of the held-out faces and "
          f"sd-coco parts; decoded pixels, fast against accurate IDCT: max difference {max(pixel_diff)} grey levels, "
          f"median {int(np.median(pixel_diff))}\n")
    print(table(rows, list(rows[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
