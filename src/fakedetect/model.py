"""The classifier: a pretrained backbone, then global average pooling, dropout and a sigmoid (P(fake))."""

from __future__ import annotations

import keras

from fakedetect.backbones import build_backbone
from fakedetect.errors import ConfigError

BACKBONE_LAYER = "backbone"


def build_model(backbone: str, weights: str = "imagenet", image_size: int | None = None,
                dropout: float = 0.2, stochastic_depth: bool = True) -> keras.Model:
    """Builds the full model; it takes raw 0..255 RGB pixels and outputs the probability of fake.

    The backbone is frozen (phase 1 of training); see :func:`unfreeze` for phase 2.

    Args:
        stochastic_depth: keep the backbone's own per-block dropout ("drop connect"), active whenever the model
            runs in training mode (Keras 3 does not pin the nested call's ``training=False`` for it). False
            makes training deterministic given the data (no random draw anywhere but augmentation).
    """
    base = build_backbone(backbone, weights, image_size)
    base.name = BACKBONE_LAYER  # one stable name whatever the backbone
    base.trainable = False
    if not stochastic_depth:
        for layer in base.layers:
            if isinstance(layer, keras.layers.Dropout):
                layer.rate = 0.0
    size = base.input_shape[1]
    inputs = keras.Input((size, size, 3), name="image")
    # training=False keeps BatchNormalization in inference mode, also once layers are unfrozen.
    x = base(inputs, training=False)
    x = keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
    x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", dtype="float32", name="head_prob")(x)
    return keras.Model(inputs, outputs, name=f"fakedetect_{backbone.replace('-', '_')}")


def get_backbone(model: keras.Model) -> keras.Model:
    return model.get_layer(BACKBONE_LAYER)


def unfreeze(model: keras.Model, top: int | str) -> list[str]:
    """Makes the top of the backbone trainable, keeping every BatchNormalization layer frozen.

    Args:
        top: a number of backbone layers counted from the end, or a block name prefix (``"block6"``): that
            block and every layer after it.

    Returns:
        Names of the backbone layers that are now trainable and hold weights.

    Raises:
        ConfigError: a block name that matches no layer.
    """
    base = get_backbone(model)
    base.trainable = True
    layers = base.layers
    if isinstance(top, str):
        start = next((i for i, layer in enumerate(layers) if layer.name.startswith(top)), None)
        if start is None:
            blocks = sorted({layer.name.split("_")[0] for layer in layers if layer.name.startswith("block")})
            raise ConfigError(f"no backbone layer starts with {top!r}; blocks: {', '.join(blocks)}")
    else:
        start = max(0, len(layers) - top) if top > 0 else len(layers)
    names = []
    for i, layer in enumerate(layers):
        layer.trainable = i >= start and not isinstance(layer, keras.layers.BatchNormalization)
        if layer.trainable and layer.weights:
            names.append(layer.name)
    return names


def compile_model(model: keras.Model, learning_rate: float) -> None:
    """(Re)compiles with Adam and binary cross-entropy; needed after any change to ``trainable``."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.BinaryCrossentropy(),
        metrics=[keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")],
    )



def load_model(path) -> keras.Model:
    """Loads a saved ``model.keras`` with Keras' safe mode on (no arbitrary code)."""
    return keras.models.load_model(path, safe_mode=True, compile=False)
