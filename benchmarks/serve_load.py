"""Load test of `fakedetect serve` (gunicorn) on loopback only, bounded in time.

Starts the server on 127.0.0.1, warms it up, measures single-upload latency of a 1024x768 JPEG, then runs
N concurrent clients for M seconds (with the CPU time the server and this load generator spent per request:
both run on the same cores), and compares the server's memory (all its processes) at the end with its
memory after warm-up. With --engine: the scoring engine (issue 25); the figures then add the start-up time (from
the command to the first answer of /healthz, a graph already made), the per-request time of each stage (the API's
``timing_ms``, median under load), and the server's memory after one explanation (``?explain=1``).

    python benchmarks/serve_load.py RUN_DIR [--clients 16] [--seconds 60] [--workers 2] [--engine onnxruntime]
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
from common import machine, table


def server_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (Linux /proc)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            pass
    return total / 1024


def server_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) of a process and all its live descendants (Linux /proc)."""
    total, todo = 0, [pid]
    tick = os.sysconf("SC_CLK_TCK")
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError, IndexError):
            pass
    return total / tick


def photo_jpeg(w=1024, h=768) -> bytes:
    from PIL import Image

    y, x = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(0)
    arr = np.stack([(x * 255 / w), (y * 255 / h), ((x + y) % 256)], -1) + rng.normal(0, 8, (h, w, 3))
    buf = io.BytesIO()
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def post(url: str, data: bytes, timings: list | None = None) -> tuple[int, float]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"p.jpg\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(url, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    t = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            body = r.read()
            status = r.status
        if timings is not None:
            import json

            timings.append(json.loads(body)["results"][0].get("timing_ms", {}))
    except urllib.error.HTTPError as e:
        status = e.code
    except OSError:
        status = 0
    return status, time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--single", type=int, default=30, help="sequential uploads for the latency figure")
    ap.add_argument("--engine", default=None, help="tensorflow, onnxruntime or auto (default: serve's own)")
    args = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    engine = ["--engine", args.engine] if args.engine else []
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "fakedetect", "serve", args.run_dir, "--port", str(port),
                             "--workers", str(args.workers), *engine],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                if urllib.request.urlopen(base + "/healthz", timeout=2).status == 200:
                    break
            except OSError:
                time.sleep(0.2)
        startup = time.perf_counter() - started
        url = base + "/api/v1/predict"
        img = photo_jpeg()
        for _ in range(4 * args.workers):  # warm-up: every worker traces its inference function
            post(url, img)
        rss_warm = server_rss_mb(proc.pid)
        single = [post(url, img)[1] for _ in range(args.single)]
        results: list[tuple[int, float]] = []
        timings: list[dict] = []
        lock = threading.Lock()
        stop = time.perf_counter() + args.seconds

        def client():
            while time.perf_counter() < stop:
                r = post(url, img, timings)
                with lock:
                    results.append(r)

        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        t0, cpu0, own0 = time.perf_counter(), server_cpu_s(proc.pid), time.process_time()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
        server_cpu, client_cpu = server_cpu_s(proc.pid) - cpu0, time.process_time() - own0
        rss_end = server_rss_mb(proc.pid)
        explained = post(url + "?explain=1", img)[0]
        rss_explained = server_rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)
    lat = np.array([d for s, d in results if s == 200])
    errors = sum(1 for s, _ in results if s != 200)
    rows = [
        {"measure": f"1 client, 1024x768 JPEG: p50 latency (ms), {args.single} uploads",
         "value": 1000 * float(np.percentile(single, 50))},
        {"measure": "1 client: p95 latency (ms)", "value": 1000 * float(np.percentile(single, 95))},
        {"measure": f"{args.clients} clients x {args.seconds:g} s: requests", "value": len(results)},
        {"measure": f"{args.clients} clients: errors", "value": errors},
        {"measure": f"{args.clients} clients: requests/s", "value": len(lat) / elapsed},
        {"measure": f"{args.clients} clients: p50 latency (ms)",
         "value": 1000 * float(np.percentile(lat, 50)) if len(lat) else float("nan")},
        {"measure": f"{args.clients} clients: p95 latency (ms)",
         "value": 1000 * float(np.percentile(lat, 95)) if len(lat) else float("nan")},
        {"measure": f"{args.clients} clients: server CPU per request (ms)",
         "value": 1000 * server_cpu / max(len(results), 1)},
        {"measure": f"{args.clients} clients: load generator CPU per request (ms; same cores)",
         "value": 1000 * client_cpu / max(len(results), 1)},
        {"measure": f"server's capacity with the clients elsewhere: {os.cpu_count()} cores / server CPU per "
                    "request (requests/s)", "value": os.cpu_count() * max(len(results), 1) / max(server_cpu, 1e-9)},
        {"measure": "server memory after warm-up (MB)", "value": rss_warm},
        {"measure": "server memory at the end (MB)", "value": rss_end},
        {"measure": "memory growth (%)", "value": 100 * (rss_end / rss_warm - 1) if rss_warm else float("nan")},
        {"measure": f"server memory after one explanation (MB; status {explained})", "value": rss_explained},
        {"measure": "start-up: command to first /healthz answer (s)", "value": startup},
    ]
    for stage in ("decode", "variants", "waiting", "scoring"):
        v = [t[stage] for t in timings if stage in t]
        if v:
            rows.append({"measure": f"{args.clients} clients: {stage} per request, median (ms)",
                         "value": float(np.median(v))})
    print(f"\nserve load, {dt.date.today()}, {machine()}; gunicorn, {args.workers} worker(s), loopback only; "
          f"engine {args.engine or 'serve default'}")
    print(f"run: {os.path.abspath(args.run_dir)}\n")
    print(table(rows, ["measure", "value"]))
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
