"""The upload page and the health check."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, render_template

bp = Blueprint("pages", __name__, template_folder="templates", static_folder="static",
               static_url_path="/static")


@bp.get("/")
def index():
    s = current_app.extensions["fakedetect"]
    limit_mb = current_app.config["MAX_CONTENT_LENGTH"] / 1024 / 1024
    return render_template("index.html", card=s.run.card, threshold=s.run.threshold, limit_mb=f"{limit_mb:g}")


@bp.get("/healthz")
def healthz():
    s = current_app.extensions["fakedetect"]  # the app factory loads the model before serving anything
    return jsonify(status="ok", model_loaded=True, backbone=s.run.card.backbone)
