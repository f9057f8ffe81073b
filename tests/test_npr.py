"""The trace backbones: NPR's residual, the `npr` network trained whole from scratch, `npr-lite0`, and Lite2."""

import json

import keras
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from fakedetect.cli.main import main
from fakedetect.config import load_config, resolve
from fakedetect.models.classifier import build_model, feature_taps, load_model
from fakedetect.models.efficientnet_lite import lite_depths, lite_stages
from fakedetect.models.layers import NPRResidual
from fakedetect.models.registry import block_ids, build_backbone


def test_residual_of_a_nearest_upsampled_image_is_zero_and_of_a_photo_is_not():
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (2, 16, 16, 3)).astype("float32")
    up = np.repeat(np.repeat(small, 2, axis=1), 2, axis=2)  # nearest-neighbour upsampling by 2
    assert np.abs(np.asarray(NPRResidual()(up))).max() == 0
    noisy = up + rng.normal(0, 1, up.shape).astype("float32")
    res = np.asarray(NPRResidual()(noisy))
    assert np.abs(res).mean() > 0.5
    # every pixel minus the top-left pixel of its 2x2 block; an odd last row/column is its own block's top
    odd = rng.integers(0, 256, (1, 5, 7, 3)).astype("float32")
    r = np.asarray(NPRResidual()(odd))
    np.testing.assert_array_equal(r[0, 1, 3], odd[0, 1, 3] - odd[0, 0, 2])
    np.testing.assert_array_equal(r[0, 4, 6], 0)


def test_npr_network_size_taps_and_any_size():
    model = build_model("npr", "imagenet", 64)  # no ImageNet weights: built from scratch
    base = model.get_layer("backbone")
    assert 1.3e6 < base.count_params() < 1.6e6  # NPR's ~1.4 M parameters
    assert feature_taps(model) == ["stem_activation", "block1c_out", "block2d_out"]
    assert {i.rstrip("_") for i in block_ids("npr")} <= {layer.name.split("_")[0] for layer in base.layers}
    any_size = build_backbone("npr", "none", any_size=True)
    assert any_size(np.zeros((1, 40, 40, 3), "float32")).shape == (1, 5, 5, 512)


def test_train_all_backbones_have_no_frozen_phase():
    cfg = resolve(load_config(None, {"backbone": "npr", "epochs_frozen": 2, "epochs_finetune": 3,
                                     "lr_frozen": 2e-4, "lr_finetune": 1e-5}))
    assert (cfg.epochs_frozen, cfg.epochs_finetune, cfg.lr_finetune) == (0, 5, 2e-4)
    assert cfg.weights == "none" and cfg.unfreeze == "stem" and cfg.train_batchnorm and cfg.image_size == 224
    lite = resolve(load_config(None, {"backbone": "npr-lite0"}))
    assert lite.weights == "imagenet" and lite.epochs_frozen == 0
    assert resolve(load_config(None, {"backbone": "efficientnet-lite0"})).epochs_frozen == 5  # unchanged


def test_lite2_scales_widths_and_depths():
    assert lite_depths("efficientnet-lite2") == (1, 3, 3, 4, 4, 5, 1) == lite_depths("efficientnet-lite1")
    assert [s[4] for s in lite_stages("efficientnet-lite2")] == [16, 24, 48, 88, 120, 208, 352]
    assert [s[4] for s in lite_stages("efficientnet-lite0")] == [16, 24, 40, 80, 112, 192, 320]


def test_npr_lite0_is_lite0s_first_three_stages_with_imagenet_weights():
    ref = build_backbone("efficientnet-lite0", "imagenet", 64)
    npr = build_backbone("npr-lite0", "imagenet", 64)
    assert npr.layers[-1].name == "block3b_add" and npr.output.shape[1:] == (8, 8, 40)
    np.testing.assert_array_equal(npr.get_layer("block3b_project_conv").get_weights()[0],
                                  ref.get_layer("block3b_project_conv").get_weights()[0])
    assert not any(layer.name.startswith(("block4", "top_")) for layer in npr.layers)


@pytest.mark.parametrize("backbone", ["npr", "npr-lite0"])
def test_an_npr_run_trains_whole_saves_reloads_in_safe_mode_and_exports(backbone, tiny_data, tmp_path):
    run = tmp_path / "run"
    res = CliRunner().invoke(main, ["train", "--data", str(tiny_data), "--out", str(run), "--backbone", backbone,
                                    "--image-size", "48", "--epochs-frozen", "1", "--epochs-finetune", "1",
                                    "--batch-size", "8", "--val-fraction", "0.25"])
    assert res.exit_code == 0, res.output
    assert "phase 1" not in res.output and "phase 2" in res.output
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["epochs_frozen"] == 0 and cfg["epochs_finetune"] == 2 and cfg["train_batchnorm"] is True
    assert json.loads((run / "model.json").read_text())["backbone"] == backbone
    model = load_model(run / "model.keras")  # safe mode: NPRResidual is a registered layer, not a Lambda
    assert any(isinstance(layer, NPRResidual) for layer in model.get_layer("backbone").layers)
    x = np.random.default_rng(1).integers(0, 256, (2, 48, 48, 3)).astype("float32")
    before = keras.models.load_model(run / "model.keras", safe_mode=True, compile=False)(x)
    np.testing.assert_allclose(np.asarray(model(x)), np.asarray(before), atol=1e-6)
    out = tmp_path / "m.tflite"
    res = CliRunner().invoke(main, ["export", str(run), "--format", "tflite", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert out.stat().st_size > 100_000
