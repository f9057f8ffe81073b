"""`fakedetect export`: the trained model as a TensorFlow SavedModel, a TFLite file or ONNX.

Every export takes raw 0..255 RGB pixels (float32, N x S x S x 3) and outputs the model's uncalibrated
P(fake); apply the run's temperature and threshold from model.json (written beside the export) to match
fakedetect's own outputs.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from fakedetect.atomic import atomic_path, write_json
from fakedetect.inference import load_run

FORMATS = ("saved_model", "tflite", "onnx")


class ExportError(RuntimeError):
    """A format that cannot be produced here, with the reason."""


def export(run_dir: str | Path, fmt: str, out: str | Path, overwrite: bool = False) -> Path:
    """Exports the run's model; returns the path written (a folder for saved_model, a file otherwise)."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite to replace it")
    run = load_run(run_dir)
    if fmt == "onnx":
        try:
            import tf2onnx  # noqa: F401
        except ImportError:
            raise ExportError("ONNX export needs the tf2onnx package, which is not installed "
                              "(pip install tf2onnx); export a saved_model or tflite instead") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        sm = Path(tmp) / "saved_model"
        run.model.export(str(sm), format="tf_saved_model", verbose=False)
        if fmt == "saved_model":
            if out.exists():
                shutil.rmtree(out)
            sm.rename(out)
        elif fmt == "tflite":
            import tensorflow as tf

            data = tf.lite.TFLiteConverter.from_saved_model(str(sm)).convert()
            with atomic_path(out, suffix=".tflite") as t:
                t.write_bytes(data)
        else:
            import tf2onnx

            size = run.image_size
            import tensorflow as tf

            spec = (tf.TensorSpec((None, size, size, 3), tf.float32, name="image"),)
            with atomic_path(out, suffix=".onnx") as t:
                tf2onnx.convert.from_keras(run.model, input_signature=spec, output_path=str(t))
    card_path = (out / "fakedetect.json") if out.is_dir() else out.with_suffix(out.suffix + ".json")
    write_json(card_path, {**run.card, "export_format": fmt,
                           "export_input": "float32 N x S x S x 3, raw RGB 0..255",
                           "export_output": "uncalibrated P(fake); calibrated = sigmoid(logit(p) / temperature)"})
    return out
