"""Over-limit uploads get a readable 413 from `fakedetect serve` (gunicorn), whatever the client and the size.

Clients send the whole body before they read the answer. A server that answers 413 and closes the socket while
the client is still sending makes the kernel reset the connection: the client sees "Broken pipe" instead of the
413. The app now reads and discards the unwanted body (see fakedetect.web.uploads.DrainUnreadBody) and only then
answers. These tests post bodies streamed from file-like objects, generators and sparse files (never held in
memory) with urllib, requests and curl, and check the gunicorn worker's memory while it throws them away.

The helpers here (start_serve, worker_pid, proc_kb) also serve tests/test_fuzz.py and benchmarks/fuzz_uploads.py.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

MB = 1024 * 1024
BOUNDARY = "fakedetect-upload-limits-7c1e"
HEAD = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"big.jpg\"\r\n"
        "Content-Type: image/jpeg\r\n\r\n").encode()
TAIL = f"\r\n--{BOUNDARY}--\r\n".encode()
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
_ZEROS = bytes(MB)


# --- the server, started as `fakedetect serve` starts it -------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Served:
    proc: subprocess.Popen  # the gunicorn master (`fakedetect serve` execs gunicorn in its own process)
    url: str
    log: Path

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def start_serve(run_dir, max_upload_mb: float | None = None, log: Path | None = None, **env_extra) -> Served:
    """``python -m fakedetect serve RUN --port P`` in a subprocess, waited for until /healthz answers.

    ``max_upload_mb`` None: the default limit ($FAKEDETECT_MAX_UPLOAD_MB removed from the environment). The
    server's output goes to a file, not a pipe: nobody reads a pipe during a test, and a full one blocks it.
    """
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "FAKEDETECT_MAX_UPLOAD_MB"}
    if max_upload_mb is not None:
        env["FAKEDETECT_MAX_UPLOAD_MB"] = str(max_upload_mb)
    env.update(env_extra)
    if log is None:
        fd, name = tempfile.mkstemp(prefix="fakedetect-serve-", suffix=".log")
        os.close(fd)
        log = Path(name)
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "fakedetect", "serve", str(run_dir), "--port", str(port)],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    served = Served(proc, f"http://127.0.0.1:{port}", log)
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(served.url + "/healthz", timeout=2).status == 200:
                return served
        except OSError:
            time.sleep(0.5)
        if proc.poll() is not None:
            raise RuntimeError(f"server exited:\n{served.log_tail()}")
    served.stop()
    raise RuntimeError(f"server did not start in 90 s:\n{served.log_tail()}")


def worker_pid(master: int, timeout: float = 30) -> int:
    """The PID of the (single) gunicorn worker: the master's child process."""
    deadline = time.time() + timeout
    while True:
        children = []
        for task in Path(f"/proc/{master}/task").iterdir():
            try:
                children += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
        if len(children) == 1:
            return children[0]
        if time.time() > deadline:
            raise RuntimeError(f"gunicorn master {master} has children {children}, expected one worker")
        time.sleep(0.2)


def proc_kb(pid: int, field: str = "VmRSS") -> int:
    """A memory figure of a process from /proc/PID/status, in kB (VmRSS: resident now; VmHWM: peak resident)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak_rss(pid: int) -> bool:
    """Resets the process's VmHWM to its current RSS (Linux >= 4.0: write 5 to /proc/PID/clear_refs).

    False where that is not allowed: VmHWM then still holds earlier peaks (loading the model, say).
    """
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# --- bodies that are never held whole in memory -----------------------------------------------------------------

class ZeroUpload:
    """A multipart body of exactly ``total`` bytes (one part 'image' full of zeros), read piece by piece.

    It has a length, so urllib and requests send it with Content-Length.
    """

    def __init__(self, total: int):
        assert total > len(HEAD) + len(TAIL)
        self.total, self.pos = total, 0
        self._zeros_end = total - len(TAIL)

    def __len__(self) -> int:
        return self.total - self.pos

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0 or size > MB:
            size = MB
        out = b""
        while size > 0 and self.pos < self.total:
            if self.pos < len(HEAD):
                piece = HEAD[self.pos:self.pos + size]
            elif self.pos < self._zeros_end:
                piece = _ZEROS[:min(size, self._zeros_end - self.pos)]
            else:
                start = self.pos - self._zeros_end
                piece = TAIL[start:start + size]
            out += piece
            self.pos += len(piece)
            size -= len(piece)
        return out


def zero_chunks(total: int):
    """The same body as a generator: urllib and requests send it with Transfer-Encoding: chunked."""
    yield HEAD
    left = total - len(HEAD) - len(TAIL)
    while left > 0:
        n = min(MB, left)
        yield _ZEROS[:n]
        left -= n
    yield TAIL


def _answer(status: int, raw: bytes, headers) -> tuple[int, dict, str]:
    try:
        body = json.loads(raw)
    except ValueError:
        body = {"raw": raw[:200].decode(errors="replace")}
    return status, body, (headers.get("Connection") or "")


def post_urllib(url: str, total: int, chunked: bool = False) -> tuple[int, dict, str]:
    headers = {"Content-Type": CONTENT_TYPE}
    if chunked:
        data = zero_chunks(total)
    else:
        data = ZeroUpload(total)
        headers["Content-Length"] = str(total)
    req = urllib.request.Request(url + "/api/v1/predict", data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return _answer(r.status, r.read(), r.headers)
    except urllib.error.HTTPError as e:
        return _answer(e.code, e.read(), e.headers)


def post_requests(url: str, total: int, chunked: bool = False) -> tuple[int, dict, str]:
    import requests

    data = zero_chunks(total) if chunked else ZeroUpload(total)
    r = requests.post(url + "/api/v1/predict", data=data, headers={"Content-Type": CONTENT_TYPE}, timeout=120)
    return _answer(r.status_code, r.content, r.headers)


def sparse_file(folder: Path, size: int) -> Path:
    """A file of ``size`` zero bytes that takes no disk space (and no memory: curl streams it)."""
    path = folder / f"zeros-{size}.jpg"
    if not path.exists():
        with open(path, "wb") as f:
            f.truncate(size)
    return path


def post_curl(url: str, path: Path) -> tuple[int, dict, str]:
    """curl -F streams the file as a multipart part; "Expect: 100-continue" makes curl wait for gunicorn's
    "100 Continue" before sending (curl asks for it by itself above 1 MiB; here it is explicit)."""
    out = subprocess.run(["curl", "-sS", "--max-time", "120", "-H", "Expect: 100-continue", "-D", "-",
                          "-F", f"image=@{path};filename=big.jpg", url + "/api/v1/predict"],
                         capture_output=True, timeout=180)
    if out.returncode != 0:
        raise ConnectionError(f"curl exit {out.returncode}: {out.stderr.decode(errors='replace').strip()}")
    blocks = out.stdout.split(b"\r\n\r\n")
    # -D - prints every response head (the 100 Continue too), then the body.
    heads, raw = blocks[:-1], blocks[-1]
    final = [h for h in heads if h.startswith(b"HTTP/") and not h.startswith(b"HTTP/1.1 100")][-1].decode()
    status = int(final.split()[1])
    headers = dict(line.split(": ", 1) for line in final.split("\r\n")[1:] if ": " in line)
    return _answer(status, raw, headers)


def _outcome(fn, *args) -> tuple[int, dict, str] | str:
    try:
        return fn(*args)
    except Exception as e:  # noqa: BLE001 - a reset or broken pipe is the failure under test: count it
        return f"{type(e).__name__}: {e}"


def assert_all_413(outcomes: list, limit_mb: float, what: str) -> None:
    expected = {"error": f"upload too large: the limit is {limit_mb:g} MB", "status": 413}
    bad = [o for o in outcomes if isinstance(o, str) or o[0] != 413 or o[1] != expected or o[2].lower() != "close"]
    assert not bad, f"{what}: {len(bad)}/{len(outcomes)} did not read the 413: {bad[:3]}"


# --- the fast test: 1 MB limit ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_limit_server(tiny_run, tmp_path_factory):
    served = start_serve(tiny_run, max_upload_mb=1, log=tmp_path_factory.mktemp("serve") / "server.log")
    yield served
    served.stop()


CLIENTS = {
    "urllib": lambda url, n: post_urllib(url, n),
    "urllib-chunked": lambda url, n: post_urllib(url, n, chunked=True),
    "requests": lambda url, n: post_requests(url, n),
    "requests-chunked": lambda url, n: post_requests(url, n, chunked=True),
}


@pytest.mark.parametrize("client", list(CLIENTS))
@pytest.mark.parametrize("size_mb", [2, 5, 64])
def test_over_limit_upload_reads_a_413(small_limit_server, client, size_mb):
    outcomes = [_outcome(CLIENTS[client], small_limit_server.url, size_mb * MB) for _ in range(4)]
    assert_all_413(outcomes, 1, f"{client} {size_mb} MB")
    assert small_limit_server.proc.poll() is None


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
@pytest.mark.parametrize("size_mb", [2, 5, 64])
def test_over_limit_upload_reads_a_413_with_curl(small_limit_server, tmp_path, size_mb):
    path = sparse_file(tmp_path, size_mb * MB)
    outcomes = [_outcome(post_curl, small_limit_server.url, path) for _ in range(4)]
    assert_all_413(outcomes, 1, f"curl {size_mb} MB")


def test_server_throws_over_limit_bodies_away_without_keeping_them(small_limit_server, tiny_data):
    url = small_limit_server.url
    worker = worker_pid(small_limit_server.proc.pid)
    # Warm up: one real prediction (model traced, allocator settled), then measure.
    photo = next((tiny_data / "real").glob("*.jpg")).read_bytes()
    import requests

    assert requests.post(url + "/api/v1/predict", files={"image": ("p.jpg", photo)}, timeout=60).status_code == 200
    rss_before = proc_kb(worker)
    peak_reset = reset_peak_rss(worker)
    outcomes = [_outcome(post_urllib, url, 64 * MB), _outcome(post_requests, url, 64 * MB, True)]
    assert_all_413(outcomes, 1, "64 MB")
    growth_mb = (proc_kb(worker) - rss_before) / 1024
    peak_growth_mb = (proc_kb(worker, "VmHWM") - rss_before) / 1024  # meaningful only when peak_reset
    assert growth_mb < 32  # a server keeping a 64 MB body would grow by 64 MB
    assert worker_pid(small_limit_server.proc.pid) == worker  # the same worker: none was killed or restarted
    # And the server still answers normally.
    assert requests.post(url + "/api/v1/predict", files={"image": ("p.jpg", photo)}, timeout=60).status_code == 200
    if not peak_reset:
        pytest.skip("the worker's peak memory (VmHWM) cannot be reset here: the peak was not measured")
    print(f"worker RSS before {rss_before / 1024:.0f} MB; peak growth {peak_growth_mb:.1f} MB, "
          f"after {growth_mb:.1f} MB, over 2 uploads of 64 MB")
    assert peak_growth_mb < 32


class CountingBody:
    """A request body of ``n`` zero bytes that counts what is read of it."""
    def __init__(self, n):
        self.left, self.nread = n, 0

    def read(self, size=-1):
        size = self.left if size is None or size < 0 else min(size, self.left)
        self.left -= size
        self.nread += size
        return bytes(size)

    readline = read


def test_unread_body_of_a_refused_request_is_drained_in_process(tiny_run):
    """The middleware itself, without a server: a body the app refused (401, 413, chunked or not) is read to its
    end before the answer goes out; a declared length past UPLOAD_DRAIN_MAX_BYTES is not read at all."""
    from werkzeug.test import EnvironBuilder, run_wsgi_app

    from fakedetect.web import create_app

    app = create_app(tiny_run, {"API_TOKEN": "s3cret", "MAX_CONTENT_LENGTH": MB})

    def post(n, chunked=False, token=None):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        environ = EnvironBuilder("/api/v1/predict", method="POST", headers=headers).get_environ()
        body = CountingBody(n)
        environ.update({"wsgi.input": body, "CONTENT_TYPE": CONTENT_TYPE, "wsgi.input_terminated": True})
        if chunked:
            environ.pop("CONTENT_LENGTH", None)
            environ["HTTP_TRANSFER_ENCODING"] = "chunked"
        else:
            environ["CONTENT_LENGTH"] = str(n)
        app_iter, status, headers = run_wsgi_app(app, environ)
        answer = json.loads(b"".join(app_iter))
        return int(status.split()[0]), answer, headers, body

    status, answer, _, body = post(300_000)  # under the limit, refused (no token) before anything reads it
    assert status == 401 and body.left == 0
    too_large = {"error": "upload too large: the limit is 1 MB", "status": 413}
    for chunked in (False, True):  # over the limit: declared, or found out by Werkzeug while parsing the form
        status, answer, headers, body = post(5 * MB, chunked, token="s3cret")
        assert (status, answer, headers["Connection"], body.left) == (413, too_large, "close", 0), chunked
    app.config.update(UPLOAD_DRAIN_MAX_BYTES=2 * MB)
    status, answer, _, body = post(5 * MB, token="s3cret")  # declared length past the cap: not read at all
    assert status == 413 and body.nread == 0
    status, answer, _, body = post(5 * MB, chunked=True, token="s3cret")  # chunked: read up to the cap only
    assert status == 413 and MB <= body.nread <= 3 * MB


# --- the slow test: the default 20 MB limit, 21 MB / 100 MB / 1 GB x 50 with each client ---------------------------

@pytest.mark.slow
def test_over_limit_uploads_read_a_413_50_times_in_a_row(tiny_run, tiny_data, tmp_path):
    import requests

    served = start_serve(tiny_run, log=tmp_path / "server.log")
    try:
        url = served.url
        worker = worker_pid(served.proc.pid)
        photo = next((tiny_data / "real").glob("*.jpg")).read_bytes()
        assert requests.post(url + "/api/v1/predict", files={"image": ("p.jpg", photo)}, timeout=60).ok
        rss_before = proc_kb(worker)
        peak_reset = reset_peak_rss(worker)
        clients = {"urllib": post_urllib, "requests": post_requests}
        if shutil.which("curl"):
            clients["curl"] = lambda u, n: post_curl(u, sparse_file(tmp_path, n))
        times, rss, peak = {}, {}, {}
        for size in (21 * MB, 100 * MB, 1024 * MB):
            for name, fn in clients.items():
                t0 = time.time()
                outcomes = [_outcome(fn, url, size) for _ in range(50)]
                times[(name, size // MB)] = time.time() - t0
                rss[(name, size // MB)] = (proc_kb(worker) - rss_before) / 1024
                peak[size // MB] = (proc_kb(worker, "VmHWM") - rss_before) / 1024 if peak_reset else 0.0
                assert_all_413(outcomes, 20, f"{name} {size // MB} MB x 50\n{served.log_tail()}")
        growth_mb = (proc_kb(worker) - rss_before) / 1024
        for (name, size_mb), s in times.items():
            print(f"{name:9s} {size_mb:5d} MB x 50: all 413, {s:.1f} s; worker RSS +{rss[(name, size_mb)]:.1f} MB")
        peaks = ", ".join(f"{k} MB: +{v:.1f} MB" for k, v in peak.items())
        print(f"worker RSS before {rss_before / 1024:.0f} MB; peak after each size ({peaks}); now +{growth_mb:.1f} MB")
        # The worker never held an upload. What it gains is glibc keeping freed 1 MiB read buffers in its heap
        # (measured: +6 MB after the 21 MB uploads, +10..16 MB after all 450; with MALLOC_MMAP_THRESHOLD_ fixed
        # at 128 KiB it stays at +0): less than the 20 MB limit while 21 MB uploads were thrown away, and far
        # from 100 MB or 1 GB after them.
        assert peak[21] < 20, peak
        assert peak[1024] < 64 and growth_mb < 64, peak
        assert worker_pid(served.proc.pid) == worker
    finally:
        served.stop()
