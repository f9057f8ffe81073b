"""A serve worker's resident memory on the TensorFlow engine over uploads of every size, in one process.

Scores N PNG uploads through the web app's `Scorer` (40-600 px, every tenth a flat PNG of 1000-8000 px a side) and
prints the resident memory after a heap trim every 100 uploads, then the time of a 1024x768 JPEG request. Run it
once per allocator setting (issue 22: TensorFlow's oneDNN allocator keeps its pool):

    TF_ONEDNN_USE_SYSTEM_ALLOCATOR=false python benchmarks/tf_worker_memory.py RUN [--uploads 600]
    TF_ONEDNN_USE_SYSTEM_ALLOCATOR=true  python benchmarks/tf_worker_memory.py RUN
    TF_ENABLE_ONEDNN_OPTS=0              python benchmarks/tf_worker_memory.py RUN
"""

from __future__ import annotations

import argparse
import io
import os
import time

import numpy as np
from common import machine, table
from PIL import Image
from serve_load import photo_jpeg

from fakedetect.run import load_run
from fakedetect.web.memory import malloc_trim, resident_bytes
from fakedetect.web.service import Scorer, check_upload


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("--uploads", type=int, default=600)
    args = ap.parse_args()
    trim = malloc_trim()
    scorer = Scorer(load_run(args.run_dir, "tensorflow"))
    rng = np.random.default_rng(0)
    rows = []
    for i in range(args.uploads):
        buf = io.BytesIO()
        if i % 10 == 5:
            side = (int(rng.integers(1000, 8000)), int(rng.integers(1000, 8000)))
            Image.new("RGB", side, (i % 255, 3, 4)).save(buf, "PNG")
        else:
            h, w = int(rng.integers(40, 600)), int(rng.integers(40, 600))
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, "PNG")
        scorer.analyse(check_upload(buf.getvalue(), "x.png"))
        if i % 100 == 0 or i == args.uploads - 1:
            if trim is not None:
                trim(0)
            rows.append({"uploads": i + 1, "resident MB": round(resident_bytes() / 2**20, 1)})
    data = photo_jpeg()
    for _ in range(5):
        scorer.analyse(check_upload(data, "p.jpg"))
    t = time.perf_counter()
    for _ in range(30):
        scorer.analyse(check_upload(data, "p.jpg"))
    ms = 1000 * (time.perf_counter() - t) / 30
    settings = {k: os.environ.get(k, "unset") for k in ("TF_ONEDNN_USE_SYSTEM_ALLOCATOR", "TF_ENABLE_ONEDNN_OPTS")}
    print(f"\nTensorFlow worker memory, {machine()}; {settings}; a 1024x768 JPEG request: {ms:.1f} ms\n")
    print(table(rows, ["uploads", "resident MB"]))


if __name__ == "__main__":
    main()
