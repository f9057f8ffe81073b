"""JSON API: POST /api/v1/predict, GET /api/v1/model."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from fakedetect.web.service import KEEP_DECODED_PIXELS, UploadError, check_upload

bp = Blueprint("api", __name__)


def scorer():
    return current_app.extensions["fakedetect"]


@bp.post("/predict")
def predict():
    """Scores each file of the multipart field ``image``; ?explain=1 adds a Grad-CAM overlay (PNG data URI)."""
    files = request.files.getlist("image")
    if not files:
        return jsonify(error="no file: send the image as multipart/form-data field 'image'"), 400
    if len(files) > current_app.config["MAX_FILES"]:
        return jsonify(error=f"too many files: at most {current_app.config['MAX_FILES']} per request"), 400
    explain = request.args.get("explain", "0").lower() in ("1", "true", "yes")
    checked = []
    s = scorer()
    keep = KEEP_DECODED_PIXELS if s.numpy else 0  # pixels the checks may keep decoded, where scoring uses Pillow's
    for f in files:
        # The client's file name is only echoed back (never used as a path); the bytes stay in memory.
        try:
            c = check_upload(f.read(), f.filename or "", keep_pixels=keep)
            checked.append((f.filename or "", c))
            if c.pixels is not None:
                keep -= c.facts["width"] * c.facts["height"]
        except UploadError as e:
            return jsonify(error=str(e), filename=f.filename or ""), 400
    pixels = sum(c.facts["width"] * c.facts["height"] for _, c in checked)
    cap = current_app.config["MAX_REQUEST_PIXELS"]
    if pixels > cap:  # decoding and scoring time grow with the pixels: bound what one request may cost
        return jsonify(error=f"too many pixels in one request: {pixels / 1e6:.0f} megapixels, at most "
                             f"{cap / 1e6:.0f}; send fewer or smaller images per request", status=413), 413
    results = []
    for name, c in checked:
        try:
            results.append({"filename": name, **s.analyse(c, explain=explain)})
        except UploadError as e:  # passed the checks but the decoder refused it: the upload's fault, not ours
            return jsonify(error=str(e), filename=name), 400
    return jsonify(results=results, threshold=s.run.threshold, model=s.run.card.backbone)


@bp.get("/model")
def model_card():
    """The run's model card: backbone, image size, threshold, calibration, training data summary."""
    return jsonify(scorer().run.card.public_dict())  # source names, never the paths of the training machine
