"""The Flask web app: an upload page and a JSON API over one trained run.

``create_app`` loads the model once per process. Under gunicorn, ``fakedetect serve`` points each worker at
the run through $FAKEDETECT_RUN_DIR (see :func:`create_app_from_env`).
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

DEFAULT_MAX_UPLOAD_MB = 20
MAX_FILES = 32


def create_app(run_dir: str | Path | None = None, config: dict | None = None) -> Flask:
    """Builds the app for the run in ``run_dir`` (or config["RUN_DIR"]).

    Config keys: RUN_DIR; MAX_CONTENT_LENGTH (bytes; default 20 MB, or $FAKEDETECT_MAX_UPLOAD_MB);
    API_TOKEN (if set, /api/ requires "Authorization: Bearer TOKEN"; default $FAKEDETECT_API_TOKEN).
    """
    from fakedetect.inference import load_run
    from fakedetect.web.service import Scorer

    app = Flask(__name__)
    mb = float(os.environ.get("FAKEDETECT_MAX_UPLOAD_MB", DEFAULT_MAX_UPLOAD_MB))
    app.config.update(MAX_CONTENT_LENGTH=int(mb * 1024 * 1024), API_TOKEN=os.environ.get("FAKEDETECT_API_TOKEN"),
                      MAX_FILES=MAX_FILES, RUN_DIR=run_dir)
    app.config.update(config or {})
    if not app.config["RUN_DIR"]:
        raise ValueError("create_app needs a run folder (run_dir or config['RUN_DIR'])")
    app.extensions["fakedetect"] = Scorer(load_run(app.config["RUN_DIR"]))

    from fakedetect.web.api import bp as api_bp
    from fakedetect.web.pages import bp as pages_bp

    app.register_blueprint(pages_bp)
    app.register_blueprint(api_bp, url_prefix="/api/v1")

    @app.before_request
    def _check_token():
        token = app.config.get("API_TOKEN")
        if token and request.path.startswith("/api/"):
            given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), token.encode()):
                return jsonify(error="missing or wrong API token (Authorization: Bearer TOKEN)"), 401
        return None

    @app.errorhandler(HTTPException)
    def _http_error(e: HTTPException):
        msg = e.description
        if e.code == 413:
            limit = app.config["MAX_CONTENT_LENGTH"] / 1024 / 1024
            msg = f"upload too large: the limit is {limit:g} MB"
        return jsonify(error=msg, status=e.code), e.code

    @app.after_request
    def _headers(resp):
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Content-Security-Policy",
                                "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'")
        return resp

    return app


def create_app_from_env() -> Flask:
    """Entry point for gunicorn: ``gunicorn 'fakedetect.web:create_app_from_env()'``."""
    run_dir = os.environ.get("FAKEDETECT_RUN_DIR")
    if not run_dir:
        raise RuntimeError("set FAKEDETECT_RUN_DIR to a run folder")
    return create_app(run_dir)
