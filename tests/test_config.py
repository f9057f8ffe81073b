import pytest

from fakedetect.config import dump_config, load_config, presets, resolve_image_size
from fakedetect.errors import ConfigError


def test_defaults_are_the_seed_recipe():
    cfg = load_config()
    assert (cfg.backbone, cfg.weights, cfg.unfreeze) == ("efficientnet-b4", "imagenet", 20)
    assert cfg.lr_finetune < cfg.lr_frozen


def test_layering_file_then_flags(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("backbone: efficientnet-lite0\nbatch_size: 8\naugment:\n  jpeg_prob: 0.5\n")
    cfg = load_config(f, {"batch_size": 4, "epochs_frozen": None})
    assert cfg.backbone == "efficientnet-lite0"  # from the file
    assert cfg.batch_size == 4  # flag beats file
    assert cfg.epochs_frozen == 5  # None flag leaves the default
    assert cfg.augment.jpeg_prob == 0.5 and cfg.augment.flip is True


def test_presets_load_and_round_trip(tmp_path):
    assert {"default", "cpu", "cifake-cpu", "cifake-fast", "demo"} <= set(presets())
    for name in presets():  # every shipped recipe is valid and survives config.yaml
        cfg = load_config(name)
        f = tmp_path / f"{name}.yaml"
        f.write_text(dump_config(cfg))
        assert load_config(f) == cfg
    assert load_config("default").image_size == 380
    assert load_config("cpu").backbone.startswith("efficientnet-lite")


@pytest.mark.parametrize("overrides,field", [
    ({"backbone": "resnet"}, "backbone"),
    ({"val_fraction": 1.5}, "val_fraction"),
    ({"batch_size": 0}, "batch_size"),
    ({"unfreeze": -1}, "unfreeze"),
    ({"colour": "red"}, "colour"),
    ({"augment": {"jpeg_quality": [90, 10]}}, "augment.jpeg_quality"),
])
def test_invalid_values_name_the_field(overrides, field):
    with pytest.raises(ConfigError, match=field):
        load_config(None, overrides)


def test_missing_config_file():
    with pytest.raises(ConfigError, match="not found.*presets"):
        load_config("no/such.yaml")


def test_a_config_names_its_base_and_says_only_what_differs(tmp_path):
    fast, full = load_config("cifake-fast").to_dict(), load_config("cifake-cpu").to_dict()
    assert (fast["epochs_finetune"], fast["lr_finetune"]) == (2, 5e-4) and full["epochs_finetune"] == 5
    assert {k for k in full if fast[k] != full[k]} == {"epochs_finetune", "lr_finetune", "recipe"}
    (tmp_path / "mine.yaml").write_text("base: cifake-fast\naugment: {jpeg_prob: 0.5}\n")
    (tmp_path / "child.yaml").write_text("base: mine.yaml\nseed: 7\n")  # a file next to it, then a preset chain
    cfg = load_config(tmp_path / "child.yaml")
    assert (cfg.seed, cfg.augment.jpeg_prob, cfg.augment.zoom, cfg.epochs_finetune) == (7, 0.5, 0.05, 2)


@pytest.mark.parametrize("text, message", [("base: b.yaml\n", "name each other as base"),
                                           ("base: 3\n", "invalid base"), ("base: nowhere\n", "not found")])
def test_a_bad_base_is_refused(tmp_path, text, message):
    (tmp_path / "a.yaml").write_text(text)
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path / "a.yaml")


def test_a_null_image_size_resolves_to_the_final_backbones_size(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("backbone: efficientnet-b0\nimage_size: null\n")
    cfg = load_config(f, {"backbone": "efficientnet-lite1"})  # --backbone, after the file
    resolved = resolve_image_size(cfg)
    assert resolved.image_size == 240 and cfg.image_size is None  # the backbone's native size; cfg left alone
    assert "image_size: 240" in dump_config(resolved)  # what config.yaml then says
    assert resolve_image_size(resolved) is resolved  # a size already there stays
    assert resolve_image_size(load_config(None, {"image_size": 64})).image_size == 64
