"""NPR, the trace backbone: neighbouring pixel relationships (Tan et al., CVPR 2024).

A generator's decoder upsamples: within each 2x2 block its output pixels are tied to each other in ways a camera's
are not. NPR feeds the network ``x - up(down(x))``, the residual of nearest-neighbour down- and up-sampling by 2:
each pixel minus the top-left pixel of its 2x2 block. The image's content cancels out; what is left is how
neighbouring pixels relate. A small CNN trained from scratch reads it: ResNet-50's stem (a 3x3 stride-2 conv, as
NPR's) + layer1 + layer2, about 1.4 M parameters.

Layer names follow the EfficientNet convention the domain check's feature taps look for (``stem_activation``,
``block1*``, ``block2*``), so the taps find three depths.

``npr-lite0`` puts the same residual in front of EfficientNet-Lite0's first three stages (ImageNet weights, all of
it trained): see :func:`fakedetect.models.efficientnet_lite.build_lite`.
"""

from __future__ import annotations

import keras
from keras import layers

from fakedetect.models import NPR_STAGES
from fakedetect.models.efficientnet_lite import block_prefix
from fakedetect.models.layers import RESIDUAL_LAYER, NPRResidual

# NPR scales the residual of ImageNet-normalised pixels by 2/3; here pixels are 0..255: the same scale.
_RESIDUAL_SCALE = (2.0 / 3.0) / (255.0 * 0.226)


def build_npr(size: int | None) -> keras.Model:
    """NPR's network: raw 0..255 RGB in, the last 512-channel feature map (1/8 of the input size) out;
    ``size`` None takes any square size."""
    bn_eps = 1e-5
    inputs = keras.Input((size, size, 3), name="input_pixels")
    x = NPRResidual(name=RESIDUAL_LAYER)(inputs)
    x = layers.Rescaling(_RESIDUAL_SCALE, name="npr_scale")(x)
    x = layers.Conv2D(64, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = layers.BatchNormalization(epsilon=bn_eps, name="stem_bn")(x)
    x = layers.ReLU(name="stem_activation")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    for s, (blocks, width, stride) in enumerate(NPR_STAGES):
        for r in range(blocks):
            x = _bottleneck(x, block_prefix(s, r), width, stride if r == 0 else 1, bn_eps)
    return keras.Model(inputs, x, name="npr")


def _bottleneck(x, p: str, width: int, stride: int, bn_eps: float):
    """ResNet's bottleneck block (1x1, 3x3 with the stride, 1x1 to 4 x width; projected shortcut when the shape
    changes), as torchvision's."""
    shortcut = x
    y = layers.Conv2D(width, 1, use_bias=False, name=p + "conv1")(x)
    y = layers.BatchNormalization(epsilon=bn_eps, name=p + "bn1")(y)
    y = layers.ReLU(name=p + "relu1")(y)
    y = layers.Conv2D(width, 3, strides=stride, padding="same", use_bias=False, name=p + "conv2")(y)
    y = layers.BatchNormalization(epsilon=bn_eps, name=p + "bn2")(y)
    y = layers.ReLU(name=p + "relu2")(y)
    y = layers.Conv2D(4 * width, 1, use_bias=False, name=p + "conv3")(y)
    y = layers.BatchNormalization(epsilon=bn_eps, name=p + "bn3")(y)
    if stride != 1 or x.shape[-1] != 4 * width:
        shortcut = layers.Conv2D(4 * width, 1, strides=stride, use_bias=False, name=p + "down_conv")(x)
        shortcut = layers.BatchNormalization(epsilon=bn_eps, name=p + "down_bn")(shortcut)
    y = layers.add([y, shortcut], name=p + "add")
    return layers.ReLU(name=p + "out")(y)
