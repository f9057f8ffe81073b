"""EfficientNet-Lite in Keras (ReLU6, no squeeze-and-excitation, fixed stem and head), with Keras'
EfficientNet layer names (stem_*, blockNx_*, top_*).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

# Blocks per stage. Lite1 scales the depth of Lite0 by 1.1 except in the first and last stages.
LITE_DEPTHS = {"efficientnet-lite0": (1, 2, 2, 3, 3, 4, 1), "efficientnet-lite1": (1, 3, 3, 4, 4, 5, 1)}

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


def lite_blocks(depth_repeats: tuple[int, ...]) -> Iterator[Block]:
    """Every block of a Lite network in order: the one walk over the stages that the builder and the weight
    mapping share."""
    j = 0
    for stage, ((k, s, e, fin, fout), reps) in enumerate(zip(_LITE_STAGES, depth_repeats, strict=True)):
        for r in range(reps):
            yield Block(j, block_prefix(stage, r), k, s if r == 0 else 1, e, fin if r == 0 else fout, fout)
            j += 1


def build_lite(name: str, size: int | None, include_top: bool = False, drop_connect_rate: float = 0.2):
    """EfficientNet-Lite ``name`` (a key of :data:`LITE_DEPTHS`) in Keras, with Keras' EfficientNet layer names
    (stem_*, blockNx_*, top_*); ``size`` None takes any square input size."""
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
    depths = LITE_DEPTHS[name]
    total = sum(depths)
    for blk in lite_blocks(depths):
        x = _block(x, blk, drop_connect_rate * blk.index / total, correct_pad, bn_eps)
    x = layers.Conv2D(1280, 1, padding="same", use_bias=False, name="top_conv")(x)
    x = layers.BatchNormalization(epsilon=bn_eps, name="top_bn")(x)
    x = layers.ReLU(6.0, name="top_activation")(x)
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dense(1000, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, x, name=name.replace("-", "_"))


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
