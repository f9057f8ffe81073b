"""`fakedetect export`: the trained model as a TensorFlow SavedModel, a TFLite file or ONNX.

Every export takes raw 0..255 RGB pixels (float32, N x S x S x 3) and outputs the *calibrated* P(fake): the
run's temperature scaling, sigmoid(logit(p) / T) with p clipped to [1e-7, 1 - 1e-7] as in
``fakedetect.metrics``, is part of the exported graph, so the output is what `fakedetect predict` reports for
the same pixels. The decision threshold is written beside the export in a JSON sidecar (the model card):
label = fake when output >= threshold.

A crop-mode run exports its per-crop graph: an image's K crops go in as a batch, and the sidecar's
``export_crop_rule`` says how their outputs combine (mean or max of the logits, then the sigmoid). Temperature
scaling divides every logit by the same T, so combining the calibrated crops' logits gives the calibrated score
of the image: the rule needs nothing else.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from fakedetect.atomic import atomic_path, write_json
from fakedetect.errors import ExportError, OutputExistsError
from fakedetect.run import load_run, tf_logit
from fakedetect.runfolder import EXPORT_SIDECAR_IN_FOLDER

FORMATS = ("saved_model", "tflite", "onnx")
ONNX_OPSET = 17
OUTPUT_NOTE = "calibrated P(fake) (temperature scaling already applied); label = fake when output >= threshold"


def sidecar_path(out: str | Path) -> Path:
    """Where the JSON model card of an export goes: inside a saved_model folder, beside a file."""
    out = Path(out)
    return (out / EXPORT_SIDECAR_IN_FOLDER) if out.is_dir() else out.with_suffix(out.suffix + ".json")


def calibrated_fn(model, temperature: float, image_size: int):
    """A tf.function: raw pixels (N x S x S x 3 float32) -> calibrated P(fake), shape (N, 1) (the logit as
    :func:`fakedetect.run.tf_logit` computes it, divided by the temperature)."""
    import tensorflow as tf

    inv_t = 1.0 / float(temperature)  # Python floats become constants inside the graph (not captured inputs)

    @tf.function(input_signature=[tf.TensorSpec((None, image_size, image_size, 3), tf.float32, name="image")])
    def serve(image):
        p = tf.reshape(tf.cast(model(image, training=False), tf.float32), (-1, 1))
        z = tf_logit(p)
        return tf.identity(tf.sigmoid(z * inv_t), name="prob_fake")

    return serve


def crop_rule(fr) -> str:
    """How an export of a crop-mode run scores one image (see the module's docstring)."""
    where = {1: "its centre", 5: "its four corners (top-left, top-right, bottom-left, bottom-right) then its centre",
             9: "a 3x3 grid, row by row (offsets 0, (side - S) // 2 and side - S)"}[fr.crops]
    return (f"cut {fr.crops} crops of S x S px (S = image_size) at the image's own resolution, at {where}, after "
            f"mirroring a side shorter than S out to S (reflected, centred); score them as one batch; the image's "
            f"calibrated P(fake) is sigmoid({fr.combine} over the crops of log(p / (1 - p))), p clipped to "
            "[1e-7, 1 - 1e-7]; label = fake when it is >= threshold")


def _check_onnx() -> None:
    try:
        import tf2onnx  # noqa: F401
    except ImportError as e:
        raise ExportError(f"ONNX export needs the tf2onnx package, which cannot be imported here ({e}): "
                          'pip install -e ".[onnx]", or export a saved_model or tflite instead') from None


def export(run_dir: str | Path, fmt: str, out: str | Path, overwrite: bool = False) -> Path:
    """Exports the run's model with its calibration; returns the path written (a folder for saved_model, a file
    otherwise). A JSON model card with the threshold and temperature is written beside it (see ``sidecar_path``).
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out} already exists; pass --overwrite to replace it")
    if fmt == "onnx":
        _check_onnx()
    run = load_run(run_dir)
    import keras
    import tensorflow as tf

    serve = calibrated_fn(run.model, run.temperature, run.image_size)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        if fmt in ("saved_model", "tflite"):
            sm = Path(tmp) / "saved_model"
            archive = keras.export.ExportArchive()
            archive.track(run.model)
            archive.add_endpoint("serve", serve)
            archive.write_out(str(sm), verbose=False)
            if fmt == "saved_model":
                if out.is_dir():
                    shutil.rmtree(out)
                elif out.exists():
                    out.unlink()
                sm.rename(out)
            else:
                data = tf.lite.TFLiteConverter.from_saved_model(str(sm)).convert()
                with atomic_path(out, suffix=".tflite") as t:
                    t.write_bytes(data)
        else:
            import tf2onnx

            with atomic_path(out, suffix=".onnx") as t:
                tf2onnx.convert.from_function(serve, input_signature=serve.input_signature, opset=ONNX_OPSET,
                                              output_path=str(t))
    write_json(sidecar_path(out), {**run.card.public_dict(), "export_format": fmt,
                           "export_input": "float32 N x S x S x 3, raw RGB 0..255 (S = image_size)"
                           + (": an image's crops (see export_crop_rule)" if run.framing.cropped else ""),
                           **({"export_crop_rule": crop_rule(run.framing)} if run.framing.cropped else {}),
                           "export_output": OUTPUT_NOTE,
                           "export_calibrated": True,
                           "threshold": run.threshold,
                           "temperature": run.temperature})
    return out
