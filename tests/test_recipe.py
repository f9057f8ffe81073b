"""The training recipe's knobs (issue 13): cosine schedule, progressive resizing, label smoothing, weight EMA."""

import logging
import math

import numpy as np
import pandas as pd
import pytest
import yaml

from fakedetect.training.loop import smooth_labels
from fakedetect.training.schedules import cosine_lr, epoch_sizes


def test_cosine_warms_up_then_decays_to_the_floor_at_the_last_step():
    # 110 steps: 10 of warm-up, then half a cosine over steps 10..109.
    lrs = [cosine_lr(1.0, s, 110, warmup_steps=10, min_ratio=0.1) for s in range(110)]
    assert lrs[:3] == pytest.approx([0.1, 0.2, 0.3]) and lrs[9] == pytest.approx(1.0)
    assert lrs[10] == pytest.approx(1.0)
    # Halfway through the decay: the mean of top and floor.
    assert cosine_lr(1.0, 10 + 99 / 2, 110, 10, 0.1) == pytest.approx(0.55)
    assert lrs[109] == pytest.approx(0.1)  # the floor exactly at the last step
    assert cosine_lr(1.0, 500, 110, 10, 0.1) == pytest.approx(0.1)  # never below it
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))
    assert cosine_lr(2.0, 25, 51, 0, 0.0) == pytest.approx(2.0 * 0.5 * (1 + math.cos(math.pi * 0.5)))


def test_a_warmup_never_takes_more_than_a_fifth_of_a_phase():
    from fakedetect.training.schedules import EarlyStop, PhaseSchedule, Plateau

    s = PhaseSchedule(1.0, 20, 100, True, 0.1, Plateau(1, 0.5), EarlyStop(1))
    assert s.warmup_steps == 4 and s.rate(0) == pytest.approx(0.25) and s.rate(4) == pytest.approx(1.0)
    assert s.rate(19) == pytest.approx(0.1)  # the decay still reaches its floor at the last step
    assert PhaseSchedule(1.0, 2000, 100, True, 0.1, Plateau(1, 0.5), EarlyStop(1)).warmup_steps == 100


def test_a_model_is_built_at_its_own_size_unless_it_trains_at_several():
    from fakedetect.models.classifier import any_size_view, build_model, get_backbone

    fixed = build_model("efficientnet-b0", "none", 80)  # 80 -> 40 -> 20 -> 10 -> 5: a strided layer sees 5
    assert get_backbone(fixed).input_shape == (None, 80, 80, 3)
    open_ = build_model("efficientnet-lite0", "none", 64, any_size=True)
    assert get_backbone(open_).input_shape == (None, None, None, 3)
    assert any_size_view(open_)(np.zeros((1, 32, 32, 3), np.float32)).shape == (1, 1)


def test_epoch_sizes_put_the_progressive_sizes_first():
    assert epoch_sizes(96, 5, [64, 64, 80]) == [64, 64, 80, 96, 96]
    assert epoch_sizes(96, 2, None) == [96, 96]
    assert epoch_sizes(96, 2, [64, 80, 88]) == [64, 80]


def test_label_smoothing_moves_targets_toward_one_half():
    y = np.array([0.0, 1.0])
    assert smooth_labels(y, 0.1) == pytest.approx([0.05, 0.95])
    assert smooth_labels(y, 0.0) is y


@pytest.mark.parametrize("config_error", [
    {"schedule": "step"}, {"ema_decay": 1.0}, {"label_smoothing": 1.0}, {"finetune_sizes": [64, 64]},
    {"finetune_sizes": [16]}, {"finetune_sizes": [48]}, {"min_lr_ratio": 2},
    {"image_size": 96 + 16, "finetune_sizes": [64]}, {"train_batchnorm": "yes"}, {"weight_decay": -0.1},
    {"mixup": -1},
])
def test_recipe_settings_are_checked(config_error):
    from fakedetect.config import load_config
    from fakedetect.errors import ConfigError

    with pytest.raises(ConfigError, match=next(iter(config_error))):
        load_config(None, {"epochs_finetune": 2, "image_size": 96, **config_error})


def test_mixup_mixes_images_and_labels_alike_and_repeatably(tmp_path):
    from PIL import Image

    from fakedetect.data.pipeline import build_stream

    paths, labels = [], []
    for i in range(20):  # reals black, fakes white: a mixed image's grey level / 255 is its mixed label
        p = tmp_path / f"{i}.png"
        Image.new("RGB", (8, 8), (255 * (i % 3 == 0),) * 3).save(p)
        paths.append(str(p))
        labels.append(int(i % 3 == 0))

    def batches(mixup):
        return [(x.numpy(), y.numpy()) for x, y in build_stream(paths, labels, 8, 8, None, 1, mixup=mixup).take(6)]

    plain, mixed = batches(0.0), batches(0.4)
    assert all(set(y) <= {0.0, 1.0} for _, y in plain)
    assert any(not set(y) <= {0.0, 1.0} for _, y in mixed)  # lam ~ Beta(0.4, 0.4) lands strictly inside (0, 1)
    for (_, y0), (x1, y1) in zip(plain, mixed, strict=True):
        # 8 of 20 files per batch: the same batch as without mixup, mixed with a shuffle of itself (not another's)
        assert y1.sum() == pytest.approx(y0.sum(), abs=1e-4)
        grey = x1.mean(axis=(1, 2, 3)) / 255
        assert np.allclose(grey, y1, atol=1e-3)  # images and labels mixed by the same lam
        inside = grey[(grey > 1e-3) & (grey < 1 - 1e-3)]
        assert np.allclose(np.minimum(inside, 1 - inside), np.minimum(inside, 1 - inside)[:1], atol=1e-3)  # one lam
    again = batches(0.4)
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(mixed, again, strict=True))


def test_mixup_under_mixed_precision_keeps_float16_images(tmp_path):
    import keras
    from PIL import Image

    from fakedetect.config import AugmentConfig
    from fakedetect.data.pipeline import build_stream

    paths = []
    for i in range(4):
        Image.new("RGB", (8, 8), (60 * i,) * 3).save(tmp_path / f"{i}.png")
        paths.append(str(tmp_path / f"{i}.png"))
    keras.mixed_precision.set_global_policy("mixed_float16")  # as training does on a GPU: augmentation in float16
    try:
        x, y = next(iter(build_stream(paths, [0, 1, 0, 1], 8, 4, AugmentConfig(), 0, mixup=0.4)))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert x.dtype == "float16" and y.dtype == "float32" and x.shape == (4, 8, 8, 3)


def test_weight_decay_shrinks_kernels_by_rate_times_decay_and_leaves_biases(tmp_path):
    import keras
    import tensorflow as tf

    from fakedetect.config import load_config
    from fakedetect.training.loop import Loop, Recorder

    inp = keras.Input((3,))
    model = keras.Model(inp, keras.layers.Dense(2, bias_initializer="ones")(inp))
    kernel, bias = (np.array(w) for w in model.get_weights())
    for decay in (0.0, 0.1):
        model.set_weights([kernel, bias])
        loop = Loop(tf.distribute.get_strategy(), load_config(None, {"weight_decay": decay}), model, 8,
                    np.ones(2, np.float32), Recorder(tmp_path, True), tmp_path, tmp_path, {})
        opt = loop._optimizer(0.5, model.trainable_variables)
        opt.apply_gradients([(tf.zeros_like(v), v) for v in model.trainable_variables])  # Adam moves nothing
        k, b = model.get_weights()
        np.testing.assert_allclose(k, kernel * (1 - 0.5 * decay), rtol=1e-6)
        np.testing.assert_array_equal(b, bias)


def _head_loop(tmp_path, ema_decay, val_losses):
    """A Loop training a one-layer head on features, with a validation that returns the given losses in turn
    and records the weights it was called with."""
    import keras
    import tensorflow as tf

    from fakedetect.config import load_config
    from fakedetect.training.inputs import feature_stream
    from fakedetect.training.loop import Loop, Phase, Recorder

    keras.utils.set_random_seed(0)
    strategy = tf.distribute.get_strategy()
    cfg = load_config(None, {"ema_decay": ema_decay})
    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Dense(1, activation="sigmoid", name="head_prob")(inp))
    rng = np.random.default_rng(0)
    f = rng.normal(size=(64, 4)).astype(np.float32)
    y = (f[:, 0] > 0).astype(np.float32)
    seen = []

    def validate():
        seen.append([np.array(w) for w in model.get_weights()])
        p = val_losses[len(seen) - 1]  # P(fake) of one fake image: loss -log(p)
        from fakedetect.training.sums import binary_sums

        return binary_sums(np.array([1.0]), np.array([p]))

    loop = Loop(strategy, cfg, model, 8, np.ones(2, np.float32), Recorder(tmp_path, True),
                tmp_path / "checkpoints", tmp_path, {})
    loop.run(Phase("frozen", model, lambda seed, _: feature_stream(strategy, f, y, 8, seed), validate, 1, 0.5, 8))
    return model, seen


def test_the_moving_average_is_validated_and_saved_when_it_is_better(tmp_path):
    from fakedetect.models.classifier import load_model

    model, seen = _head_loop(tmp_path, 0.5, [0.3, 0.6])  # raw: loss 1.20; moving average: 0.51
    raw_now, ema = model.get_weights(), seen[1]
    assert len(seen) == 2 and not np.allclose(raw_now[0], ema[0])  # the average differs from the raw weights
    assert all(np.array_equal(a, b) for a, b in zip(seen[0], raw_now, strict=True))  # training goes on from raw
    saved = load_model(tmp_path / "model.keras").get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(saved, ema, strict=True))
    row = pd.read_csv(tmp_path / "history.csv").iloc[0]
    assert row["weights"] == "ema" and row["val_loss"] == pytest.approx(-math.log(0.6), rel=1e-6)
    assert row["val_loss_raw"] == pytest.approx(-math.log(0.3), rel=1e-6)


def test_the_raw_weights_are_saved_when_the_average_is_worse(tmp_path):
    from fakedetect.models.classifier import load_model

    model, seen = _head_loop(tmp_path, 0.5, [0.6, 0.3])
    saved = load_model(tmp_path / "model.keras").get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(saved, model.get_weights(), strict=True))
    assert not np.allclose(saved[0], seen[1][0])
    assert pd.read_csv(tmp_path / "history.csv").iloc[0]["weights"] == "raw"


def test_progressive_sizes_cosine_and_ema_in_a_real_run(tiny_data, tmp_path, caplog):
    from fakedetect.config import load_config
    from fakedetect.models.classifier import load_model
    from fakedetect.training import train

    from .conftest import TINY_TRAIN

    cfg = load_config(None, {**TINY_TRAIN, "image_size": 64, "epochs_finetune": 3, "finetune_sizes": [32, 32],
                             "schedule": "cosine", "ema_decay": 0.9, "min_lr_ratio": 0.1, "lr_finetune": 1e-4})
    caplog.set_level(logging.INFO, logger="fakedetect")
    train(tiny_data, cfg, tmp_path / "run")
    h = pd.read_csv(tmp_path / "run" / "history.csv")
    assert list(h["image_size"]) == [64, 32, 32, 64] and list(h["phase"]) == ["frozen"] + ["finetune"] * 3
    assert h["val_loss_ema"].notna().all() and set(h["weights"]) <= {"raw", "ema"}
    # Cosine: the rate of each epoch's last step falls to min_lr_ratio x the rate at the phase's last step.
    ft = h[h["phase"] == "finetune"]["learning_rate"].to_numpy()
    assert ft[0] > ft[1] > ft[2] and ft[2] == pytest.approx(1e-5)
    assert load_model(tmp_path / "run" / "model.keras").input_shape == (None, 64, 64, 3)  # served at image_size
    assert "image sizes [32, 32, 64]" in caplog.text


def test_train_batchnorm_in_a_real_run_moves_the_unfrozen_statistics_only(tiny_data, tmp_path):
    import keras
    from click.testing import CliRunner

    from fakedetect.cli.main import main
    from fakedetect.models.classifier import build_model, get_backbone, load_model

    from .test_cli import TINY

    res = CliRunner().invoke(main, ["train", "--data", str(tiny_data), "--out", str(tmp_path / "run"), *TINY,
                                    "--unfreeze", "block6", "--train-batchnorm", "--label-smoothing", "0.1",
                                    "--ema-decay", "0.9", "--epochs-frozen", "0",  # the kept model is fine-tuned
                                    "--weight-decay", "0.01", "--mixup", "0.2"])
    assert res.exit_code == 0, res.output
    assert "BatchNorm trained" in res.output
    trained = get_backbone(load_model(tmp_path / "run" / "model.keras"))
    start = get_backbone(build_model("efficientnet-lite0", "imagenet", 48))  # the ImageNet statistics
    for layer in start.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            same = np.array_equal(np.array(layer.moving_variance),
                                  np.array(trained.get_layer(layer.name).moving_variance))
            assert same == (not layer.name.startswith(("block6", "block7", "top"))), layer.name
    cfg = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert cfg["train_batchnorm"] is True and cfg["label_smoothing"] == 0.1 and cfg["weight_decay"] == 0.01
    assert cfg["mixup"] == 0.2


def test_tta_scores_the_mean_logit_of_the_image_and_its_mirror(calibrated_run, tiny_data, tmp_path):
    from click.testing import CliRunner

    from fakedetect.cli.main import main
    from fakedetect.data.pipeline import build_dataset
    from fakedetect.run import load_run, predict_raw

    run = load_run(calibrated_run)
    paths = sorted(str(p) for p in (tiny_data / "fake").iterdir())[:6]
    plain = predict_raw(run.model, paths, run.image_size)
    tta = predict_raw(run.model, paths, run.image_size, tta=True)
    x = np.concatenate([b.numpy() for _, b in build_dataset(paths, None, run.image_size, 8)])
    p1, p2 = (np.asarray(run.model(v)).ravel().astype(np.float64) for v in (x, x[:, :, ::-1]))

    def logit(p):
        return np.log(p) - np.log1p(-p)

    assert plain == pytest.approx(p1, abs=1e-5)
    assert tta == pytest.approx(1 / (1 + np.exp(-(logit(p1) + logit(p2)) / 2)), abs=1e-5)
    assert np.abs(tta - plain).max() > 1e-4  # the mirror changes the scores of these images
    out = tmp_path / "tta.csv"
    res = CliRunner().invoke(main, ["predict", str(calibrated_run), *paths, "--tta", "--out", str(out)])
    assert res.exit_code == 0, res.output
    got = pd.read_csv(out).set_index("path").loc[paths, "prob_fake"].to_numpy()
    assert got == pytest.approx(run.calibrate(tta), abs=1e-5)  # the run's temperature still applies


def test_a_null_image_size_is_written_as_a_number_and_an_old_null_config_still_resumes(tiny_data, tmp_path,
                                                                                       monkeypatch):
    import dataclasses
    import json

    from fakedetect.config import load_config
    from fakedetect.models.registry import BACKBONES
    from fakedetect.run import load_run
    from fakedetect.training import resume_training, train

    from .conftest import TINY_TRAIN

    # Lite0's native size made 48 px, so that the run is tiny: a null size is resolved from the registry.
    monkeypatch.setitem(BACKBONES, "efficientnet-lite0",
                        dataclasses.replace(BACKBONES["efficientnet-lite0"], image_size=48))
    run = tmp_path / "run"
    train(tiny_data, load_config(None, {**TINY_TRAIN, "image_size": None}), run)
    assert yaml.safe_load((run / "config.yaml").read_text())["image_size"] == 48
    assert load_run(run).image_size == 48
    # A run written before sizes were resolved, killed at the start of fine-tuning: config.yaml holds null.
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    (run / "config.yaml").write_text(yaml.safe_dump({**cfg, "image_size": None}, sort_keys=False))
    state = json.loads((run / "state.json").read_text())
    (run / "state.json").write_text(json.dumps({**state, "phase": "finetune", "phase_epoch": 0, "epoch": 1,
                                                "checkpoint": None, "stopped": False}))
    (run / "model.json").unlink()
    pd.read_csv(run / "history.csv").iloc[:1].to_csv(run / "history.csv", index=False)
    resume_training(run)
    assert list(pd.read_csv(run / "history.csv")["phase"]) == ["frozen", "finetune"]
    assert load_run(run).image_size == 48 and json.loads((run / "state.json").read_text())["phase"] == "done"
