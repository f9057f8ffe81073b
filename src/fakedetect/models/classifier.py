"""The classifier: a pretrained backbone, then global average pooling, dropout and a sigmoid (P(fake))."""

from __future__ import annotations

import keras

from fakedetect.errors import ConfigError
from fakedetect.models import BACKBONE_LAYER, DROPOUT_LAYER, OUTPUT_LAYER, POOL_LAYER
from fakedetect.models import layers as _layers  # noqa: F401 - registers NPRResidual: load_model reads npr runs
from fakedetect.models.registry import build_backbone


def build_model(backbone: str, weights: str, image_size: int, dropout: float = 0.2, stochastic_depth: bool = True,
                any_size: bool = False) -> keras.Model:
    """Builds the full model; it takes raw 0..255 RGB pixels and outputs the probability of fake.

    The backbone is frozen (phase 1 of training); see :func:`unfreeze` for phase 2.

    Args:
        image_size: the square input size (a training config's, resolved by ``config.resolve_image_size``).
        stochastic_depth: keep the backbone's own per-block dropout ("drop connect"), active whenever the model
            runs in training mode (Keras 3 does not pin the nested call's ``training=False`` for it). False
            makes training deterministic given the data (no random draw anywhere but augmentation).
        any_size: build the backbone with an open input size, so that :func:`any_size_view` can train the same
            layers at other sizes (progressive resizing). Its strided convolutions then pad as for even inputs,
            which equals the fixed-size build only when every strided layer sees an even size: sizes that are
            multiples of 32 (the config checks it). Off, the backbone is built at ``image_size`` exactly.
    """
    base = build_backbone(backbone, weights, image_size, any_size=any_size)
    base.name = BACKBONE_LAYER  # one stable name whatever the backbone
    base.trainable = False
    if not stochastic_depth:
        for layer in base.layers:
            if isinstance(layer, keras.layers.Dropout):
                layer.rate = 0.0
    inputs = keras.Input((image_size, image_size, 3), name="image")
    # Keras 3 passes the outer call's training=True through this training=False: what keeps BatchNormalization
    # in inference mode while fine-tuning is that its layers stay untrainable (see unfreeze): a BatchNormalization
    # layer uses the batch's statistics only while training *and* trainable.
    x = base(inputs, training=False)
    x = keras.layers.GlobalAveragePooling2D(name=POOL_LAYER)(x)
    x = keras.layers.Dropout(dropout, name=DROPOUT_LAYER)(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", dtype="float32", name=OUTPUT_LAYER)(x)
    return keras.Model(inputs, outputs, name=f"fakedetect_{backbone.replace('-', '_')}")


def any_size_view(model: keras.Model) -> keras.Model:
    """The same layers (the same weights) taking square images of any size: what progressive resizing trains.

    The model itself keeps its fixed input, the size it is validated, saved and served at. It must have been
    built with ``any_size`` (a fixed-size backbone refuses other sizes).
    """
    inputs = keras.Input((None, None, 3), name="image_any_size")
    x = get_backbone(model)(inputs, training=False)
    for name in (POOL_LAYER, DROPOUT_LAYER, OUTPUT_LAYER):
        x = model.get_layer(name)(x)
    return keras.Model(inputs, x, name=f"{model.name}_any_size")


def get_backbone(model: keras.Model) -> keras.Model:
    return model.get_layer(BACKBONE_LAYER)


def unfreeze(model: keras.Model, top: int | str, batchnorm: bool = False) -> list[str]:
    """Makes the top of the backbone trainable, keeping every BatchNormalization layer frozen unless asked.

    Args:
        top: a number of backbone layers counted from the end, or a block name prefix (``"block6"``): that
            block and every layer after it.
        batchnorm: also make the BatchNormalization layers in that range trainable: their scale and offset are
            then trained, and while training they normalise with the batch's statistics and update their moving
            statistics (per replica: one replica only, see ``TrainConfig.train_batchnorm``).

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
        layer.trainable = i >= start and (batchnorm or not isinstance(layer, keras.layers.BatchNormalization))
        if layer.trainable and layer.weights:
            names.append(layer.name)
    return names


def feature_taps(model: keras.Model) -> list[str]:
    """The backbone layers the domain check reads, shallow to deep: the stem's output, the last layer of every
    stage (``block1...`` to ``block7...``, the EfficientNet naming) and the backbone's output (what the head pools).
    A backbone without that naming gives its output only."""
    names = [layer.name for layer in get_backbone(model).layers]
    taps = [n for n in names if n == "stem_activation"]
    for stage in range(1, 10):
        in_stage = [n for n in names if n.startswith(f"block{stage}")]
        if in_stage:
            taps.append(in_stage[-1])
    return [n for n in taps if n != names[-1]] + [names[-1]]


def load_model(path) -> keras.Model:
    """Loads a saved ``model.keras`` with Keras' safe mode on (no arbitrary code)."""
    return keras.models.load_model(path, safe_mode=True, compile=False)
