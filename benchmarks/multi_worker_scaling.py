"""Multi-worker scaling on one machine: `fakedetect train` as 1 worker on 1 core against 2 workers on loopback,
one core each (taskset), the same global batch and data. Prints images/s of the fine-tuning epochs and the
scaling efficiency.

    python benchmarks/multi_worker_scaling.py [--per-class 500] [--image-size 64] [--batch-size 32]

What it measures honestly: the cost of the collectives (gradient all-reduce over gRPC on loopback) and of sharded
input against perfect 2x. On one 2-core machine it cannot show network costs between real machines.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
from common import CIFAKE, machine, table


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def fine_tune_ips(run: Path, images_per_epoch: int) -> float:
    hist = pd.read_csv(run / "history.csv")
    ft = hist[hist.phase == "finetune"]
    return images_per_epoch / ft["seconds"].median()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-class", type=int, default=500)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32, help="global batch")
    ap.add_argument("--epochs", type=int, default=2, help="fine-tuning epochs (the median is reported)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="fd-scaling-"))
    common = ["--data", str(CIFAKE), "--config", "cifake-cpu", "--max-per-class", str(args.per_class),
              "--image-size", str(args.image_size), "--epochs-frozen", "1", "--epochs-finetune", str(args.epochs),
              "--val-fraction", "0.1"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    fd = [sys.executable, "-m", "fakedetect", "train"]
    rows = []
    one = tmp / "one"
    subprocess.run(["taskset", "-c", "0", *fd, *common, "--batch-size", str(args.batch_size), "--out", str(one)],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    cluster = ",".join(f"127.0.0.1:{p}" for p in free_ports(2))
    two = tmp / "two"
    procs = [subprocess.Popen(["taskset", "-c", str(i), *fd, *common, "--batch-size", str(args.batch_size // 2),
                               "--out", str(two), "--workers", cluster, "--task-index", str(i)],
                              env=env, stdout=subprocess.DEVNULL) for i in range(2)]
    for p in procs:
        if p.wait() != 0:
            raise SystemExit("a worker failed")
    n_train = int(round(2 * args.per_class * 0.9))
    per_epoch = (n_train // args.batch_size) * args.batch_size
    ips1, ips2 = fine_tune_ips(one, per_epoch), fine_tune_ips(two, per_epoch)
    rows.append({"setup": "1 worker, 1 core", "global batch": args.batch_size, "images/s": ips1, "speed-up": 1.0,
                 "efficiency": 1.0})
    rows.append({"setup": "2 workers on loopback, 1 core each", "global batch": args.batch_size, "images/s": ips2,
                 "speed-up": ips2 / ips1, "efficiency": ips2 / (2 * ips1)})
    print(f"\nmulti-worker scaling, {dt.date.today()}, {machine()}")
    print(f"CIFAKE {2 * args.per_class} images, efficientnet-lite0 at {args.image_size} px, fine-tuning from block1\n")
    print(table(rows, ["setup", "global batch", "images/s", "speed-up", "efficiency"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
