"""Fuzzed uploads against `fakedetect serve` (gunicorn, one worker) over real HTTP on loopback.

Starts the server on 127.0.0.1 for RUN_DIR exactly as `fakedetect serve` does, sends N multipart uploads drawn
by the same Hypothesis strategies as tests/test_fuzz.py (random bytes, truncated and mutated images, real images
in five formats, PNG headers with absurd sizes, odd file names and content types, 0 to 4 files per request),
counts the answers by class (animated GIFs and WebPs and huge-but-legal PNGs among them), checks gunicorn's log
for worker timeouts and re-boots, and compares the gunicorn worker's resident memory after a warm-up request with its
memory at the end. Exit status 1 if any answer was a 5xx, a 4xx without a message, or no answer.

    python benchmarks/fuzz_uploads.py RUN_DIR [--examples 10000] [--max-upload-mb 2] [--seed 0]

Needs the dev dependencies (hypothesis, pytest): it imports the strategies from the test suite.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path

from common import machine, table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for tests.*

from tests.test_fuzz import _image_bytes, fuzz_over_http, warm_up_uploads  # noqa: E402
from tests.test_upload_limits import start_serve  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("--examples", type=int, default=10_000)
    ap.add_argument("--max-upload-mb", type=float, default=2, help="the server's FAKEDETECT_MAX_UPLOAD_MB")
    ap.add_argument("--seed", type=int, default=0, help="Hypothesis seed (the same seed sends the same uploads)")
    args = ap.parse_args()
    run_dir = Path(args.run_dir).resolve()
    # One real prediction first (the model traces its function), then the largest legal PNG and a large animation.
    warm_up = warm_up_uploads(_image_bytes("JPEG", 96, 96, 0))
    served = start_serve(run_dir, max_upload_mb=args.max_upload_mb)
    try:
        f = fuzz_over_http(served, args.examples, seed=args.seed, warm_up=warm_up)
    finally:
        served.stop()
    c = f.by_class
    rows = [{"requests": f.requests, "2xx": c["2xx"], "4xx": c["4xx"], "5xx": c["5xx"],
             "no answer / other": c["other"], "RSS before (MB)": round(f.rss_before_mb, 1),
             "RSS after (MB)": round(f.rss_after_mb, 1), "peak RSS (MB)": round(f.peak_rss_mb, 1),
             "RSS after / before": f"{f.rss_after_mb / f.rss_before_mb:.3f}", "seconds": round(f.seconds, 1),
             "WORKER TIMEOUT": f.worker_timeouts, "worker boots": f.worker_boots}]
    print(f"\nfuzzed uploads over HTTP, {dt.date.today()}, {machine()}; gunicorn, 1 worker, loopback only")
    print(f"run: {run_dir}; limit {args.max_upload_mb:g} MB; Hypothesis seed {args.seed}; "
          f"worker {'unchanged' if f.same_worker else 'KILLED OR RESTARTED'}\n")
    print(table(rows, list(rows[0])))
    ok = (c["5xx"] == 0 and c["other"] == 0 and not f.problems and f.same_worker and f.worker_timeouts == 0
          and f.worker_boots == 1 and f.rss_after_mb <= 1.10 * f.rss_before_mb)
    for p in f.problems[:10]:
        print("problem:", p)
    if ok:
        os.unlink(served.log)
    else:
        print(f"server log: {served.log}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
