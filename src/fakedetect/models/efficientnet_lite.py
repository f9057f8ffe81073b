"""EfficientNet-Lite in Keras (ReLU6, no squeeze-and-excitation, fixed stem and head), with Keras'
EfficientNet layer names (stem_*, blockNx_*, top_*).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

# (width, depth) multipliers of each Lite network over the B0 layout below (TensorFlow's efficientnet_lite
# builder). Unlike EfficientNet-B*, Lite keeps the stem (32 filters), the head (1280) and the first and last
# stages' depth fixed when it scales.
LITE_SCALES = {"efficientnet-lite0": (1.0, 1.0), "efficientnet-lite1": (1.0, 1.1), "efficientnet-lite2": (1.1, 1.2)}

# (kernel, stride, expand ratio, filters in, filters out, repeats) per stage, as EfficientNet-B0.
_B0_STAGES = [
    (3, 1, 1, 32, 16, 1),
    (3, 2, 6, 16, 24, 2),
    (5, 2, 6, 24, 40, 2),
    (3, 2, 6, 40, 80, 3),
    (5, 1, 6, 80, 112, 3),
    (5, 2, 6, 112, 192, 4),
    (3, 1, 6, 192, 320, 1),
]


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """EfficientNet's channel rounding: ``filters x width`` to a multiple of 8, never more than 10% below it."""
    if width == 1.0:
        return filters
    scaled = filters * width
    new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(new + divisor) if new < 0.9 * scaled else int(new)


def lite_stages(name: str) -> list[tuple[int, int, int, int, int, int]]:
    """(kernel, stride, expand, filters in, filters out, repeats) per stage of Lite network ``name``."""
    width, depth = LITE_SCALES[name]
    last = len(_B0_STAGES) - 1
    out = []
    for i, (k, s, e, fin, fout, reps) in enumerate(_B0_STAGES):
        fin = 32 if i == 0 else round_filters(fin, width)  # the stem stays at 32 filters
        reps = reps if i in (0, last) else int(math.ceil(depth * reps))
        out.append((k, s, e, fin, round_filters(fout, width), reps))
    return out


def lite_depths(name: str) -> tuple[int, ...]:
    """Blocks per stage of Lite network ``name``: Lite0 (1, 2, 2, 3, 3, 4, 1), Lite1 and Lite2 (1, 3, 3, 4, 4, 5, 1)."""
    return tuple(stage[-1] for stage in lite_stages(name))


def block_prefix(stage: int, repeat: int) -> str:
    """Keras' EfficientNet naming of a block: stage 0, repeat 1 -> ``block1b_``."""
    return f"block{stage + 1}{chr(97 + repeat)}_"


@dataclass(frozen=True)
class Block:
    index: int  # position among all blocks
    prefix: str  # layer-name prefix, e.g. "block2a_"
    kernel: int
    stride: int
    expand: int
    filters_in: int
    filters_out: int


def lite_blocks(name: str) -> Iterator[Block]:
    """Every block of Lite network ``name`` in order: the one walk over the stages that the builder and the
    weight mapping share."""
    j = 0
    for stage, (k, s, e, fin, fout, reps) in enumerate(lite_stages(name)):
        for r in range(reps):
            yield Block(j, block_prefix(stage, r), k, s if r == 0 else 1, e, fin if r == 0 else fout, fout)
            j += 1


def build_lite(name: str, size: int | None, include_top: bool = False, drop_connect_rate: float = 0.2,
               stages: int | None = None, residual: bool = False):
    """EfficientNet-Lite ``name`` (a key of :data:`LITE_SCALES`) in Keras, with Keras' EfficientNet layer names
    (stem_*, blockNx_*, top_*); ``size`` None takes any square input size.

    Args:
        stages: keep only the stem and the first ``stages`` stages (no top conv): an early-stage feature
            extractor (``npr-lite0``). None: the whole network.
        residual: put NPR's residual (:class:`fakedetect.models.layers.NPRResidual`) in front, re-centred on
            mid-grey and amplified 4x for Lite's (x - 127.5) / 128 normalisation.
    """
    import keras
    from keras import layers

    def correct_pad(x, k):
        adjust = [1 if d is None else 1 - int(d) % 2 for d in x.shape[1:3]]
        c = k // 2
        return ((c - adjust[0], c), (c - adjust[1], c))

    bn_eps = 1e-3
    inputs = keras.Input((size, size, 3), name="input_pixels")
    x = inputs
    if residual:
        from fakedetect.models.layers import RESIDUAL_LAYER, NPRResidual

        x = NPRResidual(name=RESIDUAL_LAYER)(x)
        x = layers.Rescaling(4.0, offset=127.5, name="npr_scale")(x)
    # Lite's own normalisation: (x - 127.5) / 128.
    x = layers.Rescaling(1.0 / 128.0, offset=-127.5 / 128.0, name="lite_preprocess")(x)
    x = layers.ZeroPadding2D(correct_pad(x, 3), name="stem_conv_pad")(x)
    x = layers.Conv2D(32, 3, strides=2, padding="valid", use_bias=False, name="stem_conv")(x)
    x = layers.BatchNormalization(epsilon=bn_eps, name="stem_bn")(x)
    x = layers.ReLU(6.0, name="stem_activation")(x)
    total = sum(lite_depths(name))
    for blk in lite_blocks(name):
        if stages is not None and int(blk.prefix[5]) > stages:
            break
        x = _block(x, blk, drop_connect_rate * blk.index / total, correct_pad, bn_eps)
    if stages is None:
        x = layers.Conv2D(1280, 1, padding="same", use_bias=False, name="top_conv")(x)
        x = layers.BatchNormalization(epsilon=bn_eps, name="top_bn")(x)
        x = layers.ReLU(6.0, name="top_activation")(x)
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dense(1000, activation="softmax", name="predictions")(x)
    prefix = "npr_" if residual else ""
    return keras.Model(inputs, x, name=prefix + name.replace("-", "_") + (f"_s{stages}" if stages else ""))


def _block(x, blk: Block, drop_rate: float, correct_pad, bn_eps: float):
    """One inverted-residual block (expand, depthwise, project; residual when the shape allows)."""
    from keras import layers

    p, inp = blk.prefix, x
    if blk.expand != 1:
        x = layers.Conv2D(blk.filters_in * blk.expand, 1, padding="same", use_bias=False, name=p + "expand_conv")(x)
        x = layers.BatchNormalization(epsilon=bn_eps, name=p + "expand_bn")(x)
        x = layers.ReLU(6.0, name=p + "expand_activation")(x)
    if blk.stride == 2:
        x = layers.ZeroPadding2D(correct_pad(x, blk.kernel), name=p + "dwconv_pad")(x)
    x = layers.DepthwiseConv2D(blk.kernel, strides=blk.stride, padding="valid" if blk.stride == 2 else "same",
                               use_bias=False, name=p + "dwconv")(x)
    x = layers.BatchNormalization(epsilon=bn_eps, name=p + "bn")(x)
    x = layers.ReLU(6.0, name=p + "activation")(x)
    x = layers.Conv2D(blk.filters_out, 1, padding="same", use_bias=False, name=p + "project_conv")(x)
    x = layers.BatchNormalization(epsilon=bn_eps, name=p + "project_bn")(x)
    if blk.stride == 1 and blk.filters_in == blk.filters_out:
        if drop_rate > 0:
            x = layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=p + "drop")(x)
        x = layers.add([x, inp], name=p + "add")
    return x
