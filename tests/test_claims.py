"""Honest claims: what made a model's training fakes, and what its recipe measured on generators it had not seen."""

import json

import pytest

from fakedetect import generators
from fakedetect.config import ConfigError, load_config, recipe_intact, resolve
from fakedetect.generators import NOT_STATED, claims, generators_of


def test_the_manifest_names_the_shared_sources_generators_and_a_declared_list_wins():
    assert generators_of("cifake-train") == ["Stable Diffusion 1.4"]
    assert generators_of("faces-main") == ["StyleGAN2"] and generators_of("faces") == ["StyleGAN2"]
    assert generators_of("sd-coco")[0].startswith("Stable Diffusion 1.x")
    assert generators_of("my-photos") == [NOT_STATED] and generators_of("cifakery") == [NOT_STATED]
    assert generators_of("faces-main", ["StyleGAN3"]) == ["StyleGAN3"]


def test_claims_say_what_was_seen_and_what_was_measured_or_that_it_was_not():
    gens = {"cifake-train": ["Stable Diffusion 1.4"], "mine": [NOT_STATED]}
    c = claims(gens, None)
    assert c["seen_generators"] == ["Stable Diffusion 1.4"] and c["sources_without_generators"] == ["mine"]
    assert c["unseen_generator_auc"] is None and "not measured" in c["unseen_generator_note"]
    m = {"recipe": "general", "mean_left_out_auc": 0.61, "left_out": {"faces": 0.5, "cifake": 0.72},
         "measured": "2026-12-04"}
    c = claims(gens, m)
    assert c["unseen_generator_auc"] == 0.61 and "0.61" in c["unseen_generator_note"]
    assert "2 sources" in c["unseen_generator_note"]


def test_a_recipes_figure_is_claimed_only_by_runs_that_train_as_it_does(tmp_path):
    assert load_config("general").recipe == "general"
    assert recipe_intact(resolve(load_config("general", {"seed": 7, "max_per_class": 100})))
    assert not recipe_intact(resolve(load_config("general", {"input": "crop"})))
    assert not recipe_intact(resolve(load_config("general", {"epochs_finetune": 2})))
    assert not recipe_intact(resolve(load_config("general", {"data": ["my/own/data"]})))  # measured on other data
    f = tmp_path / "mine.yaml"
    f.write_text("base: general\nepochs_finetune: 2\n")
    assert load_config(f).recipe is None  # a file of one's own is not the shipped recipe


def test_measured_reads_the_shipped_table(tmp_path, monkeypatch):
    table = tmp_path / "measured.json"
    table.write_text(json.dumps({"general": {"recipe": "general", "mean_left_out_auc": 0.7, "left_out": {}}}))
    monkeypatch.setattr(generators, "MEASURED_FILE", table)
    assert generators.measured("general")["mean_left_out_auc"] == 0.7
    assert generators.measured("cifake-fast") is None and generators.measured(None) is None


def test_a_source_may_declare_its_generators():
    cfg = load_config(None, {"data": [{"path": "x", "generators": ["Midjourney 6"]}]})
    assert cfg.data[0]["generators"] == ["Midjourney 6"]
    with pytest.raises(ConfigError, match="generators"):
        load_config(None, {"data": [{"path": "x", "generators": "Midjourney"}]})


def test_the_shipped_table_is_what_a_general_run_claims():
    m = generators.measured("general")
    assert m is not None and set(m["left_out"]) == {"cifake", "faces", "sd-coco"}
    aucs = [v["auc"] for v in m["left_out"].values()]
    assert abs(m["mean_left_out_auc"] - sum(aucs) / len(aucs)) < 1e-3
    assert all(v["ci95"][0] <= v["auc"] <= v["ci95"][1] for v in m["left_out"].values())
    assert "leave_one_out.py" in m["command"]
    c = claims({"cifake-train": generators_of("cifake-train")}, m)
    assert "0.58" in c["unseen_generator_note"] and "3 sources" in c["unseen_generator_note"]


def test_crops_must_be_a_whole_number_of_the_allowed_ones_and_a_card_is_checked_too():
    from fakedetect.card import ModelCard
    from fakedetect.errors import RunError

    for bad in (True, 5.0, 7):
        with pytest.raises(ConfigError, match="crops"):
            load_config(None, {"crops": bad})
    with pytest.raises(ConfigError, match="recipe"):
        load_config(None, {"recipe": 5})
    with pytest.raises(RunError, match="crops"):
        ModelCard.from_dict({"image_size": 96, "threshold": 0.5, "input": "crop", "crops": 7})
