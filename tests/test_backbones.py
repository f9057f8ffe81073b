import keras
import numpy as np
import pytest

from fakedetect.errors import WeightsError, WeightsUnavailable
from fakedetect.models.classifier import build_model, get_backbone, unfreeze
from fakedetect.models.registry import BACKBONES, build_backbone


def test_registry_sizes():
    assert BACKBONES["efficientnet-b4"].image_size == 380
    assert BACKBONES["efficientnet-b0"].image_size == 224
    assert BACKBONES["efficientnet-lite0"].image_size == 224 and BACKBONES["efficientnet-lite0"].offline
    assert BACKBONES["efficientnet-lite1"].image_size == 240


@pytest.mark.parametrize("name", ["efficientnet-lite0", "efficientnet-lite1", "efficientnet-b0"])
def test_model_shapes_and_head(name):
    model = build_model(name, weights="none", image_size=64)
    assert model.input_shape == (None, 64, 64, 3)
    assert model.output_shape == (None, 1)
    for layer in ("head_pool", "head_dropout", "head_prob"):
        model.get_layer(layer)
    p = model.predict(np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32"), verbose=0)
    assert p.shape == (2, 1) and np.all((p >= 0) & (p <= 1))
    assert not get_backbone(model).trainable


def test_unfreeze_top_n_keeps_batchnorm_frozen():
    model = build_model("efficientnet-lite0", weights="none", image_size=64)
    base = get_backbone(model)
    unfreeze(model, 20)
    layers = base.layers
    for i, layer in enumerate(layers):
        if isinstance(layer, keras.layers.BatchNormalization):
            assert not layer.trainable, layer.name
        elif i >= len(layers) - 20:
            assert layer.trainable, layer.name
        else:
            assert not layer.trainable, layer.name
    assert base.get_layer("top_conv").trainable
    n_trainable = len(model.trainable_weights)
    assert 0 < n_trainable < len(model.weights)


def _bn_means(model):
    return {layer.name: np.array(layer.moving_mean) for layer in get_backbone(model).layers
            if isinstance(layer, keras.layers.BatchNormalization)}


@pytest.mark.parametrize("train_batchnorm", [False, True])
def test_batchnorm_follows_the_batch_only_when_asked_and_only_where_unfrozen(train_batchnorm):
    model = build_model("efficientnet-lite0", weights="none", image_size=64)
    names = unfreeze(model, "block6", batchnorm=train_batchnorm)
    assert ("block6a_bn" in names) == train_batchnorm and "block5c_bn" not in names
    before = _bn_means(model)
    x = np.random.default_rng(0).uniform(0, 255, (4, 64, 64, 3)).astype("float32")
    model(x, training=True)
    after = _bn_means(model)
    moved = {name for name in before if not np.array_equal(before[name], after[name])}
    if train_batchnorm:
        assert "block6a_bn" in moved and "top_bn" in moved
        assert not any(name.startswith(("stem", "block1", "block5")) for name in moved)
    else:
        assert not moved
    # Inference always uses the moving statistics: an image's answer does not depend on its batch.
    np.testing.assert_allclose(model(x[:1], training=False), model(x, training=False)[:1], rtol=1e-5, atol=1e-6)
    if train_batchnorm:  # while training it does (batch statistics)
        assert not np.allclose(model(x[:1], training=True), model(x, training=True)[:1], rtol=1e-5, atol=1e-6)


def test_unfreeze_by_block_name():
    model = build_model("efficientnet-lite0", weights="none", image_size=64)
    names = unfreeze(model, "block7")
    assert names[0].startswith("block7a") and "top_conv" in names
    assert not any(n.startswith("block6") for n in names)
    with pytest.raises(ValueError, match="block9"):
        unfreeze(model, "block9")


@pytest.mark.parametrize("name", ["efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"])
def test_lite_imagenet_weights_recognise_a_cat(name):
    from skimage.data import chelsea

    model = build_backbone(name, "imagenet", include_top=True)
    size = model.input_shape[1]
    img = keras.ops.image.resize(chelsea()[None].astype("float32"), (size, size))
    probs = model.predict(img, verbose=0)[0]
    # ImageNet classes 281-285: tabby, tiger cat, Persian, Siamese, Egyptian cat.
    assert int(np.argmax(probs)) in range(281, 286)
    assert probs[281:286].sum() > 0.8
    # The second build reads the converted weights from the cache: same outputs.
    again = build_backbone(name, "imagenet", include_top=True).predict(img, verbose=0)[0]
    np.testing.assert_allclose(again, probs, atol=1e-6)


def test_offline_imagenet_download_gives_clear_message(monkeypatch, tmp_path):
    from urllib.error import URLError

    import keras.src.utils.file_utils as fu

    def no_network(*a, **k):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(fu, "urlretrieve", no_network)
    with pytest.raises(WeightsUnavailable) as e:
        build_backbone("efficientnet-b0", "imagenet", 64)
    msg = str(e.value)
    assert "offline" in msg and "efficientnet-lite0" in msg and "--weights PATH" in msg


def test_weights_path_missing():
    with pytest.raises(WeightsError, match="weights file not found"):
        build_backbone("efficientnet-lite0", "/no/such/weights.h5")


def test_weights_from_a_keras_file(tmp_path):
    a = build_backbone("efficientnet-lite0", "imagenet", 64)
    a.set_weights([w * 0.5 + 0.01 for w in a.get_weights()])  # neither ImageNet nor a fresh init
    path = tmp_path / "lite0.weights.h5"
    a.save_weights(path)
    b = build_backbone("efficientnet-lite0", str(path), 64)
    for wa, wb in zip(a.weights, b.weights, strict=True):
        np.testing.assert_array_equal(wa.numpy(), wb.numpy())
