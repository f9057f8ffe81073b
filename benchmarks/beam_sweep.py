"""Issue 26: images/s of `fakedetect sweep` (Apache Beam's DirectRunner, 1 and 2 worker processes) against
`fakedetect predict` on the same images, the same run, engine, batch size and threads.

Each is the whole command in a fresh process (Python, TensorFlow, Beam, the model: loading is counted the same way
in both); each is also run on the first 64 images alone, so that the fixed cost (start-up and model loading) and the
steady rate, (N - 64) / (wall(N) - wall(64)), are told apart. The ONNX graph is made before the first timing.

    python benchmarks/beam_sweep.py RUN_DIR FOLDER [FOLDER...] [--batch-size 64] [--threads 2]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import machine, table


def wall(cmd: list[str], env: dict) -> float:
    t = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - t
    if out.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
    return took


def dofn_stages(run_dir: str, files: list[Path], n: int = 200) -> dict:
    """Milliseconds per image of each step of the sweep's DoFn, in one thread, on the first ``n`` files: read,
    Pillow's check (predict's, a full decode), TensorFlow's decode, framing."""
    import io

    import tensorflow as tf

    from fakedetect.beam import _framer
    from fakedetect.card import ModelCard
    from fakedetect.data.checks import ImageInfo, check_bytes, rgb_pixels
    from fakedetect.data.pipeline import decode_now

    fr = ModelCard.read(run_dir).framing
    frame = _framer(fr)
    spent = {"read": 0.0, "check (Pillow)": 0.0, "decode (TensorFlow)": 0.0, "frame": 0.0}
    for f in files[:n] + files[:n]:  # the first pass warms up; the second is timed
        t0 = time.perf_counter()
        data = f.read_bytes()
        t1 = time.perf_counter()
        info = check_bytes(data, ImageInfo(str(f)))
        t2 = time.perf_counter()
        img = decode_now(data) if info.tf_decodable else tf.constant(rgb_pixels(io.BytesIO(data)))
        t3 = time.perf_counter()
        frame(img).numpy()
        t4 = time.perf_counter()
        for k, dt_ in zip(spent, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            spent[k] += dt_ / 2
    return {k: 1000 * v / min(n, len(files)) for k, v in spent.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("folders", nargs="+")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads in all (split among processes)")
    args = ap.parse_args()

    from fakedetect.data.layout import list_files

    exe = str(Path(sys.executable).parent / "fakedetect")
    base_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    work = Path(tempfile.mkdtemp(prefix="beam-sweep-"))
    rows, stage_rows = [], []
    # the run's ONNX graph, made once before any timing (both commands would find it cached)
    wall([exe, "predict", args.run_dir, str(list_files(Path(args.folders[0]))[0]), "--engine", "onnxruntime"],
         base_env)
    try:
        for k, folder in enumerate(args.folders):
            files = list_files(Path(folder))
            stage_rows.append({"images": Path(folder).name, **dofn_stages(args.run_dir, files)})
            small = work / "small"
            shutil.rmtree(small, ignore_errors=True)
            small.mkdir()
            for i, f in enumerate(files[:64]):
                (small / f"{i:03d}{f.suffix}").symlink_to(f.resolve())
            modes = {
                "predict": lambda src, out: ([exe, "predict", args.run_dir, src, "--out", f"{out}.csv",
                                              "--engine", "onnxruntime", "--batch-size", str(args.batch_size)],
                                             {"FAKEDETECT_ORT_THREADS": str(args.threads)}),
                "sweep, 1 process": lambda src, out: ([exe, "sweep", args.run_dir, src, "--out", out, "--engine",
                                                       "onnxruntime", "--batch-size", str(args.batch_size),
                                                       "--threads", str(args.threads)], {}),
                "sweep, 2 processes": lambda src, out: ([exe, "sweep", args.run_dir, src, "--out", out, "--engine",
                                                         "onnxruntime", "--batch-size", str(args.batch_size),
                                                         "--threads", str(max(1, args.threads // 2)),
                                                         "--direct_num_workers=2",
                                                         "--direct_running_mode=multi_processing"], {}),
            }
            predict_rate = None
            for mode, make in modes.items():
                times = {}
                for what, src in (("small", str(small)), ("all", folder)):
                    out = work / f"{k}-{mode.replace(' ', '_').replace(',', '')}-{what}"
                    cmd, env = make(src, str(out))
                    print(f"{Path(folder).name}: {mode}, {what}", file=sys.stderr, flush=True)
                    times[what] = wall(cmd, {**base_env, **env})
                n = len(files)
                steady = (n - 64) / (times["all"] - times["small"])
                if mode == "predict":
                    predict_rate = steady
                rows.append({"images": f"{Path(folder).name} ({n})", "command": mode,
                             "wall s": times["all"], "images/s (all)": n / times["all"],
                             "fixed s (64 images)": times["small"], "images/s (steady)": steady,
                             "vs predict (steady)": f"{steady / predict_rate:.2f}x"})
                print(rows[-1], file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{machine()}, {dt.date.today()}; run {args.run_dir}, ONNX Runtime, batch {args.batch_size}, "
          f"{args.threads} ONNX Runtime thread(s) in all\n")
    print(table(rows, ["images", "command", "wall s", "images/s (all)", "fixed s (64 images)", "images/s (steady)",
                       "vs predict (steady)"]))
    print("\nThe sweep's DoFn, ms per image in one thread (first 200 files):\n")
    print(table(stage_rows, list(stage_rows[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
