"""fakedetect's own Keras layers, registered so that a saved model holding them loads in Keras' safe mode (a
Lambda layer, Python code, is refused there)."""

from __future__ import annotations

import keras
from keras import layers, ops

RESIDUAL_LAYER = "npr_residual"


@keras.saving.register_keras_serializable(package="fakedetect")
class NPRResidual(layers.Layer):
    """``x - up(down(x))`` with nearest-neighbour sampling by 2: every pixel minus the top-left pixel of its 2x2
    block (a last odd row or column is its own block's top). Zero on an image that is already a nearest-neighbour
    upsampling by 2. Registered, so that a saved model loads in Keras' safe mode (a Lambda would be refused)."""

    def call(self, x):
        down = x[:, ::2, ::2, :]
        up = ops.repeat(ops.repeat(down, 2, axis=1), 2, axis=2)
        shape = ops.shape(x)
        return x - up[:, : shape[1], : shape[2], :]

    def compute_output_shape(self, input_shape):
        return input_shape
