"""Several data sources in one run: each carved and validated on its own, mixed by weight, reported per source."""

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from fakedetect.cli.main import main
from fakedetect.config import ConfigError, load_config
from fakedetect.data.splits import Split
from fakedetect.errors import DataError
from fakedetect.training.inputs import class_weights, data_sources


def test_sources_are_named_from_their_files_and_the_config_checks_them():
    cfg = load_config(None, {"data": ["x/cifake-train.tar.gz", {"path": "y/faces", "weight": 2}]})
    srcs = data_sources(None, cfg)
    assert [(s.name, s.weight) for s in srcs] == [("cifake-train", 1.0), ("faces", 2)]
    assert [s.name for s in data_sources(["a/set", "b/set"], cfg)] == ["set", "set-2"]  # --data wins
    assert [s.name for s in data_sources(["a/x", "b/x", "c/x-2"], cfg)] == ["x", "x-3", "x-2"]  # all distinct
    with pytest.raises(DataError, match="twice"):
        data_sources(["a/x", "a/x/"], cfg)  # one set carved twice would validate on its own training images
    for bad in ([], [{"path": "a", "weight": 0}], [{"path": "a", "colour": 1}], [{"path": "a", "max_per_class": 1}]):
        with pytest.raises(ConfigError, match="data"):
            load_config(None, {"data": bad})


def test_joined_splits_keep_their_sources_and_class_weights_follow_the_mix():
    a, b = Split("a"), Split("b")
    for i in range(8):
        a.add(f"a{i}", i % 2, False, 1, "0" * 40)  # balanced
    for i in range(4):
        b.add(f"b{i}", int(i > 0), False, 1, "0" * 40)  # 1 real, 3 fake
    joined = Split.join("train", [a, b])
    assert joined.sources == [0] * 8 + [1] * 4 and joined.take([9]).sources == [1]
    assert joined.source_counts().tolist() == [[4, 4], [1, 3]]
    assert np.allclose(class_weights(joined, "auto", [0.5, 0.5]), [1 / (2 * 0.375), 1 / (2 * 0.625)])
    assert np.allclose(class_weights(joined, "auto", [0.99, 0.01]), 1)  # the stream is ~balanced: no weights


def test_the_stream_draws_sources_in_the_shares_of_their_weights(tmp_path):
    from fakedetect.data.pipeline import build_stream

    paths, labels, sources = [], [], []
    for k, colour in enumerate((0, 255)):
        for i in range(6):
            p = tmp_path / f"{k}-{i}.png"
            Image.new("RGB", (16, 16), (colour,) * 3).save(p)
            paths.append(str(p))
            labels.append(i % 2)
            sources.append(k)
    ds = build_stream(paths, labels, 16, 50, None, seed=3, sources=sources, mix=[0.8, 0.2])
    white = np.concatenate([(x.numpy().mean(axis=(1, 2, 3)) > 127) for x, _ in ds.take(20)])
    assert abs(white.mean() - 0.2) < 0.05  # 1,000 draws: 20% from the white source, not its 50% of the files
    even = build_stream(paths, labels, 16, 50, None, seed=3)  # one source: every file once per pass
    assert abs(np.concatenate([(x.numpy().mean(axis=(1, 2, 3)) > 127) for x, _ in even.take(6)]).mean() - 0.5) < 0.01


def test_a_run_on_two_sources_reports_each(tiny_data, tmp_path):
    from fakedetect.data.synthetic import make_synthetic_dataset
    from fakedetect.domain import DomainModel
    from fakedetect.runfolder import DOMAIN_FILE

    other = make_synthetic_dataset(tmp_path / "other", n_per_class=8, size=64, seed=5)
    out = tmp_path / "run"
    args = ["train", "--data", str(tiny_data), "--data", str(other), "--out", str(out), "--backbone",
            "efficientnet-lite0", "--image-size", "48", "--epochs-frozen", "1", "--epochs-finetune", "1",
            "--batch-size", "8", "--val-fraction", "0.25"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    card = json.loads((out / "model.json").read_text())
    names = [s["name"] for s in card["data"]["sources"]]
    assert names == ["data", "other"]
    assert card["data"]["sources"][1]["val"] == {"real": 2, "fake": 2}  # carved on its own: 25% of 8 per class
    assert card["data"]["train"] == {"real": 9 + 6, "fake": 9 + 6}
    assert set(card["val_metrics"]["sources"]) == {"data", "other"}
    assert card["val_metrics"]["sources"]["other"]["n"] == 4
    hist = pd.read_csv(out / "history.csv")
    assert {"val_auc[data]", "val_accuracy[other]"} <= set(hist.columns) and len(hist) == 2
    state = json.loads((out / "state.json").read_text())
    assert [s["name"] for s in state["data_root"]] == names  # what --resume reads
    assert len(DomainModel.load(out / DOMAIN_FILE).depths[0].means) == 4  # one mean per source and class
    assert card["domain"]["sources"] == [s["path"] for s in card["data"]["sources"]]


def test_one_capped_source_keeps_its_cap_for_resume(tiny_data):
    from fakedetect.training.inputs import prepare_data
    from fakedetect.training.recipe import _data_spec

    cfg = load_config(None, {"data": [{"path": str(tiny_data), "max_per_class": 6}], "val_fraction": 0.25})
    train, val, summary = prepare_data(None, cfg)
    assert len(train) + len(val) == 12 and not summary.sources  # one source: no per-source machinery
    assert "sources" not in summary.to_dict()  # nor in the model card
    spec = _data_spec(summary)
    assert spec == [{"path": str(tiny_data.resolve()), "weight": 1.0, "max_per_class": 6, "name": "data"}]
    again, _, _ = prepare_data(spec, load_config(None, {"val_fraction": 0.25}))  # what --resume passes
    assert again.paths == train.paths
