"""The Flask web app: an upload page and a JSON API over one trained run.

``create_app`` loads the model once per process. Under gunicorn, ``fakedetect serve`` points each worker at
the run through $FAKEDETECT_RUN_DIR (see :func:`create_app_from_env`).
"""

from __future__ import annotations

import hmac
import io
import ipaddress
import os
import socket
import time
from pathlib import Path

from flask import Flask, Request, abort, jsonify, request
from werkzeug.exceptions import HTTPException

from fakedetect.quiet import import_tensorflow
from fakedetect.run import load_run
from fakedetect.web.api import bp as api_bp
from fakedetect.web.pages import bp as pages_bp
from fakedetect.web.service import Scorer

DEFAULT_MAX_UPLOAD_MB = 20
MAX_FILES = 32
# Decoded pixels one request may ask for (the sum over its files): with the per-image MAX_PIXELS this bounds the
# time and memory one request takes (about two of the largest images a file may hold).
MAX_REQUEST_PIXELS = 128_000_000
# How much of an unwanted request body the app reads (and throws away) so that the client gets to read the
# answer; see DrainUnreadBody. Past either bound the connection is just closed.
DRAIN_MAX_BYTES = 2 * 1024**3
DRAIN_MAX_SECONDS = 60.0  # well inside gunicorn's --timeout 120, which kills a sync worker busy longer
_DRAIN_CHUNK = 1024 * 1024  # gunicorn's Body reads at most 1 MiB per step: larger reads gain nothing
_TOO_LARGE = "fakedetect.body_too_large"


def too_large_message(limit_bytes: int) -> str:
    return f"upload too large: the limit is {limit_bytes / 1024 / 1024:g} MB"


def token_ok(token: str | None, authorization: str) -> bool:
    """Whether an ``Authorization`` header carries the API token (always, when no token is set)."""
    if not token:
        return True
    given = authorization.removeprefix("Bearer ").strip()
    return hmac.compare_digest(given.encode(), token.encode())


def default_allowed_hosts() -> list[str]:
    """Host names the app answers to unless told otherwise: localhost and this machine's own names (an IP address
    is always accepted; see :func:`host_allowed`)."""
    names = {"localhost", socket.gethostname(), socket.getfqdn()}
    return sorted(n.lower() for n in names if n)


def host_allowed(host: str, allowed: list[str] | None) -> bool:
    """Whether a request's ``Host`` header names this server: an IP address, or one of ``allowed`` (".example.org"
    matches its subdomains; "*" or None: any host).

    A DNS-rebinding page reaches a server on localhost or the LAN under the attacker's own host name; refusing
    names the server was not told about stops it (IP addresses are no use to such a page).
    """
    if allowed is None or "*" in allowed:
        return True
    name = host.strip().lower()
    if name.startswith("["):  # [::1]:8000
        name = name[1:name.find("]")] if "]" in name else name
    elif name.count(":") == 1:
        name = name.rsplit(":", 1)[0]
    name = name.rstrip(".")
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        pass
    return any(name == a or (a.startswith(".") and name.endswith(a)) for a in (a.lower() for a in allowed))


def _drain(stream, left: int | None, max_bytes: int, max_seconds: float) -> bool:
    """Reads and discards ``left`` bytes of ``stream`` (None: to its end) in 1 MiB pieces, never keeping them.

    Stops at ``max_bytes`` or ``max_seconds``; returns True when it reached the end of the body.
    """
    deadline, drained = time.monotonic() + max_seconds, 0
    while left is None or left > 0:
        if drained >= max_bytes or time.monotonic() > deadline:
            return False
        try:
            data = stream.read(_DRAIN_CHUNK if left is None else min(_DRAIN_CHUNK, left))
        except Exception:  # noqa: BLE001 - client gone, or a malformed chunked body: nothing more to read
            return False
        if not data:
            return left is None
        drained += len(data)
        if left is not None:
            left -= len(data)
    return True


class _CountingInput:
    """wsgi.input as the app sees it: counts the bytes it reads and notes when it reached the end."""
    def __init__(self, stream):
        self._stream, self.nread, self.at_end = stream, 0, False

    def _seen(self, data: bytes, size) -> bytes:
        self.nread += len(data)
        if not data and size != 0:
            self.at_end = True
        return data

    def read(self, size=-1):
        return self._seen(self._stream.read(size), size)

    def readline(self, size=-1):
        return self._seen(self._stream.readline(size), size)

    def readlines(self, hint=-1):
        return list(iter(self.readline, b""))

    def __iter__(self):
        return iter(self.readline, b"")


class DrainUnreadBody:
    """WSGI middleware: the client gets to read every answer, even one given before its upload was read.

    The problem: an HTTP/1.1 client such as urllib, requests (urllib3) or curl sends the whole request body
    before it reads the response. A server that answers 413 (or 401, or anything) without reading the body and
    then closes the socket leaves unread bytes in its receive buffer; the kernel then resets the connection,
    and the client gets "Broken pipe" or "Connection reset" instead of the answer. gunicorn's own lingering
    close drains only 64 KiB for 2 s. "Expect: 100-continue" does not help either: gunicorn answers
    "100 Continue" itself before the app sees the request, and urllib and requests never send it anyway.

    The mechanism chosen: read and discard the unwanted body, then answer. It is the only one that works for
    every client, because every client is still sending. Concretely:

    - Content-Length over MAX_CONTENT_LENGTH on /api/ without the API token (when one is set): nothing is read;
      the 401 goes out with ``Connection: close`` (a client still sending may see a reset instead).
    - Content-Length over MAX_CONTENT_LENGTH otherwise: the body is read in 1 MiB pieces and thrown away (the worker's
      memory does not grow with it), the app sees an empty body, and a ``before_request`` hook answers 413
      with the JSON reason on every route. A declared length over ``UPLOAD_DRAIN_MAX_BYTES`` (2 GiB) is not
      read at all: the 413 goes out at once and the connection is closed.
    - A chunked body, or a body the app did not read to its end (a 401, a 400, a chunked upload that Werkzeug
      stopped at the limit with a 413): after the app has answered, what is left is read and discarded the
      same way before the answer goes out.
    - Both stop after ``UPLOAD_DRAIN_MAX_BYTES`` or ``UPLOAD_DRAIN_MAX_SECONDS`` (60 s, inside gunicorn's
      120 s worker timeout); the connection is then closed and a client still sending sees a reset. A slow
      client could hold a sync worker as long before this change, so this adds no new way to tie one up.

    413 answers carry ``Connection: close`` (gunicorn's sync worker closes every connection anyway).
    """
    def __init__(self, wsgi_app, flask_app: Flask):
        self.wsgi_app, self.flask_app = wsgi_app, flask_app

    def __call__(self, environ, start_response):
        cfg = self.flask_app.config
        limit = cfg.get("MAX_CONTENT_LENGTH")
        max_bytes = int(cfg.get("UPLOAD_DRAIN_MAX_BYTES", DRAIN_MAX_BYTES))
        max_seconds = float(cfg.get("UPLOAD_DRAIN_MAX_SECONDS", DRAIN_MAX_SECONDS))
        try:
            length = int(environ.get("CONTENT_LENGTH") or "")
        except ValueError:
            length = None
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()

        def respond(status, headers, exc_info=None):
            if status.startswith("413") and not any(k.lower() == "connection" for k, _ in headers):
                headers = [*headers, ("Connection", "close")]
            return start_response(status, headers, exc_info)

        def respond_close(status, headers, exc_info=None):
            headers = [(k, v) for k, v in headers if k.lower() != "connection"]
            return start_response(status, [*headers, ("Connection", "close")], exc_info)

        if limit is not None and length is not None and length > limit:
            if environ.get("PATH_INFO", "").startswith("/api/") and not token_ok(
                    cfg.get("API_TOKEN"), environ.get("HTTP_AUTHORIZATION", "")):
                # Not authorised: nothing of the body is read for it. The 401 goes out and the connection is
                # closed; a client still sending may see a connection reset instead of the 401.
                environ["wsgi.input"] = io.BytesIO()
                environ.pop("CONTENT_LENGTH", None)
                return self.wsgi_app(environ, respond_close)
            if length <= max_bytes:
                _drain(environ["wsgi.input"], length, max_bytes, max_seconds)
            environ["wsgi.input"] = io.BytesIO()
            environ[_TOO_LARGE] = True
            return self.wsgi_app(environ, respond)
        if not chunked and not length:
            return self.wsgi_app(environ, respond)
        body = environ["wsgi.input"] = _CountingInput(environ["wsgi.input"])
        try:
            return self.wsgi_app(environ, respond)
        finally:
            # Flask has built the whole answer by now, and the server sends nothing before it gets it back.
            if not body.at_end and (length is None or body.nread < length):
                _drain(body, None if length is None else length - body.nread, max_bytes, max_seconds)


class InMemoryRequest(Request):
    """Uploads stay in memory: Werkzeug would spool a file part over 500 KB to a temporary file on disk.
    MAX_CONTENT_LENGTH bounds the memory they take."""
    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        return io.BytesIO()


def create_app(run_dir: str | Path | None = None, config: dict | None = None) -> Flask:
    """Builds the app for the run in ``run_dir`` (or config["RUN_DIR"]).

    Config keys: RUN_DIR; MAX_CONTENT_LENGTH (bytes; default 20 MB, or $FAKEDETECT_MAX_UPLOAD_MB);
    API_TOKEN (if set, /api/ requires "Authorization: Bearer TOKEN"; default $FAKEDETECT_API_TOKEN);
    ALLOWED_HOSTS (host names the Host header may carry besides IP addresses; default localhost, this machine's
    names and the comma-separated $FAKEDETECT_ALLOWED_HOSTS; "*": any); MAX_REQUEST_PIXELS (decoded pixels of
    all files of one request);
    UPLOAD_DRAIN_MAX_BYTES, UPLOAD_DRAIN_MAX_SECONDS (how much of an over-limit or unread body is read and
    thrown away so the client can read the answer: 2 GiB, 60 s; see :class:`DrainUnreadBody`).
    """
    app = Flask(__name__)
    app.request_class = InMemoryRequest
    mb = float(os.environ.get("FAKEDETECT_MAX_UPLOAD_MB", DEFAULT_MAX_UPLOAD_MB))
    extra_hosts = [h.strip() for h in os.environ.get("FAKEDETECT_ALLOWED_HOSTS", "").split(",") if h.strip()]
    app.config.update(MAX_CONTENT_LENGTH=int(mb * 1024 * 1024), API_TOKEN=os.environ.get("FAKEDETECT_API_TOKEN"),
                      MAX_FILES=MAX_FILES, RUN_DIR=run_dir, UPLOAD_DRAIN_MAX_BYTES=DRAIN_MAX_BYTES,
                      UPLOAD_DRAIN_MAX_SECONDS=DRAIN_MAX_SECONDS, MAX_REQUEST_PIXELS=MAX_REQUEST_PIXELS,
                      ALLOWED_HOSTS=default_allowed_hosts() + extra_hosts)
    app.config.update(config or {})
    if not app.config["RUN_DIR"]:
        raise ValueError("create_app needs a run folder (run_dir or config['RUN_DIR'])")
    app.extensions["fakedetect"] = Scorer(load_run(app.config["RUN_DIR"]))

    app.register_blueprint(pages_bp)
    app.register_blueprint(api_bp, url_prefix="/api/v1")
    app.wsgi_app = DrainUnreadBody(app.wsgi_app, app)

    @app.before_request
    def _body_too_large():
        # First hook, so that an over-limit upload is a 413 on every route, with or without a token.
        if request.environ.get(_TOO_LARGE):
            abort(413)

    @app.before_request
    def _check_host():
        host = request.headers.get("Host", "")
        if not host_allowed(host, app.config.get("ALLOWED_HOSTS")):
            return jsonify(error=f"host {host!r} is not one this server answers to (start it with "
                                 "--allowed-host NAME to add a name)", status=400), 400
        return None

    @app.before_request
    def _check_token():
        if request.path.startswith("/api/") and not token_ok(app.config.get("API_TOKEN"),
                                                              request.headers.get("Authorization", "")):
            return jsonify(error="missing or wrong API token (Authorization: Bearer TOKEN)"), 401
        return None

    @app.errorhandler(HTTPException)
    def _http_error(e: HTTPException):
        msg = e.description
        if e.code == 413:
            msg = too_large_message(app.config["MAX_CONTENT_LENGTH"])
        return jsonify(error=msg, status=e.code), e.code

    @app.after_request
    def _headers(resp):
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Content-Security-Policy",
                                "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
                                "frame-ancestors 'none'")
        return resp

    return app


def create_app_from_env() -> Flask:
    """Entry point for gunicorn: ``gunicorn 'fakedetect.web:create_app_from_env()'``."""
    run_dir = os.environ.get("FAKEDETECT_RUN_DIR")
    if not run_dir:
        raise RuntimeError("set FAKEDETECT_RUN_DIR to a run folder")

    # Each gunicorn worker imports TensorFlow: without `serve -v`, its start-up notices stay out of the log.
    import_tensorflow(verbose=os.environ.get("FAKEDETECT_VERBOSE") == "1")
    return create_app(run_dir)
