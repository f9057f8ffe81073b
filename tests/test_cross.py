"""The cross-dataset table: every run on every test set, held-out images only, as CSV, Markdown, PNG and HTML."""

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from fakedetect.cli.main import main


@pytest.fixture(scope="module")
def unseen(tmp_path_factory):
    from fakedetect.data.synthetic import make_synthetic_dataset

    return make_synthetic_dataset(tmp_path_factory.mktemp("unseen") / "fresh", n_per_class=6, size=48, seed=11)


def test_compare_writes_one_cell_per_run_and_set_and_leaves_out_seen_images(tiny_run, calibrated_run, tiny_data,
                                                                            unseen, tmp_path):
    out = tmp_path / "cmp"
    res = CliRunner().invoke(main, ["compare", str(tiny_run), str(calibrated_run), "--data", str(tiny_data),
                                    "--data", str(unseen), "--out", str(out)])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out / "cross.csv")
    assert len(table) == 4 and set(table["run"]) == {"tiny", "calibrated"}
    assert set(table["test set"]) == {"data", "fresh"}
    own = table[table["test set"] == "data"]
    assert (own["images"] == 0).all() and (own["seen in training (left out)"] == 24).all()  # all trained on
    fresh = table[table["test set"] == "fresh"]
    assert (fresh["images"] == 12).all() and (fresh["seen in training (left out)"] == 0).all()
    assert fresh["roc_auc"].between(0, 1).all() and fresh["out_of_domain"].between(0, 1).all()
    # The same images scored with two thresholds: accuracy may differ, AUC may not.
    assert fresh["roc_auc"].nunique() == 1
    md = (out / "cross.md").read_text()
    assert "| tiny (data) |" in md and "no unseen image" in md
    assert (out / "cross.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (out / "report.html").read_text()
    assert "Cross-dataset comparison" in html and "left out" in html and "data:image/png;base64," in html
    assert json.loads((out / "cross.json").read_text())["runs"] == {"tiny": ["data"], "calibrated": ["data"]}
    again = CliRunner().invoke(main, ["compare", str(tiny_run), "--data", str(unseen), "--out", str(out)])
    assert again.exit_code != 0 and "already" in again.output  # never overwrites without --overwrite


def test_evaluate_with_several_sets_writes_the_cross_table_in_the_run(tiny_run, unseen, tmp_path):
    out = tmp_path / "ev"
    res = CliRunner().invoke(main, ["evaluate", str(tiny_run), "--data", str(unseen), "--data", str(unseen),
                                    "--out", str(out), "--max-per-class", "3"])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out / "cross.csv")
    assert list(table["test set"]) == ["fresh", "fresh-2"] and (table["images"] == 6).all()
    missing = CliRunner().invoke(main, ["compare", str(tiny_run), "--data", str(tmp_path / "nope")])
    assert missing.exit_code != 0 and "nope" in missing.output
