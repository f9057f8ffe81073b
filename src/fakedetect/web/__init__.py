"""The Flask web app: an upload page and a JSON API over one trained run.

``create_app`` loads the model once per process. Under gunicorn, ``fakedetect serve`` points each worker at
the run through $FAKEDETECT_RUN_DIR (see :func:`create_app_from_env`).
"""

from __future__ import annotations

import os
from pathlib import Path

from flask import Flask, abort, jsonify, request
from werkzeug.exceptions import HTTPException

from fakedetect.quiet import import_tensorflow
from fakedetect.run import load_run
from fakedetect.web.api import bp as api_bp
from fakedetect.web.guards import default_allowed_hosts, host_allowed, token_ok
from fakedetect.web.memory import HeapTrimmer
from fakedetect.web.pages import bp as pages_bp
from fakedetect.web.service import Scorer
from fakedetect.web.uploads import (
    DRAIN_MAX_BYTES,
    DRAIN_MAX_SECONDS,
    TOO_LARGE,
    DrainUnreadBody,
    InMemoryRequest,
    too_large_message,
)

__all__ = ["create_app", "create_app_from_env"]

DEFAULT_MAX_UPLOAD_MB = 20
MAX_FILES = 32
# Decoded pixels one request may ask for (the sum over its files): with the per-image MAX_PIXELS this bounds the
# time and memory one request takes (about two of the largest images a file may hold).
MAX_REQUEST_PIXELS = 128_000_000


def create_app(run_dir: str | Path | None = None, config: dict | None = None) -> Flask:
    """Builds the app for the run in ``run_dir`` (or config["RUN_DIR"]).

    Config keys: RUN_DIR; ENGINE (tensorflow, onnxruntime or auto; default $FAKEDETECT_ENGINE, else tensorflow:
    see :mod:`fakedetect.engine`); MAX_CONTENT_LENGTH (bytes; default 20 MB, or $FAKEDETECT_MAX_UPLOAD_MB);
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
    engine = app.config.get("ENGINE") or os.environ.get("FAKEDETECT_ENGINE") or "tensorflow"
    app.extensions["fakedetect"] = Scorer(load_run(app.config["RUN_DIR"], engine))

    app.register_blueprint(pages_bp)
    app.register_blueprint(api_bp, url_prefix="/api/v1")
    app.wsgi_app = DrainUnreadBody(app.wsgi_app, app)

    @app.before_request
    def _body_too_large():
        # First hook, so that an over-limit upload is a 413 on every route, with or without a token.
        if request.environ.get(TOO_LARGE):
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

    app.extensions["fakedetect.heap"] = HeapTrimmer()

    @app.after_request
    def _headers(resp):
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Content-Security-Policy",
                                "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
                                "frame-ancestors 'none'")
        resp.call_on_close(app.extensions["fakedetect.heap"].after_request)  # once sent: fakedetect.web.memory
        return resp

    return app


def create_app_from_env() -> Flask:
    """Entry point for gunicorn: ``gunicorn 'fakedetect.web:create_app_from_env()'``."""
    run_dir = os.environ.get("FAKEDETECT_RUN_DIR")
    if not run_dir:
        raise RuntimeError("set FAKEDETECT_RUN_DIR to a run folder")

    # Each gunicorn worker on TensorFlow imports it: without `serve -v`, its start-up notices stay out of the log.
    # On ONNX Runtime a worker imports it only for its first explanation (Grad-CAM).
    if os.environ.get("FAKEDETECT_ENGINE") != "onnxruntime":
        import_tensorflow(verbose=os.environ.get("FAKEDETECT_VERBOSE") == "1")
    return create_app(run_dir)
