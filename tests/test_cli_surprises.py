"""The CLI never surprises: options checked at parse time, one-line errors, no hangs, no leftovers, no chatter."""

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from fakedetect.cli.main import EXIT_BUG, main

from .conftest import TINY_TRAIN

TINY = [a for k, v in TINY_TRAIN.items() for a in (f"--{k.replace('_', '-')}", str(v))]


def _run(*args, **kw):
    return CliRunner().invoke(main, [str(a) for a in args], **kw)


# -- errors keep their causes ---------------------------------------------------------------------------------------

def test_a_bug_shows_its_traceback_and_asks_for_a_report(tiny_data, monkeypatch):
    import fakedetect.data.inspect

    def broken(*a, **k):
        raise ValueError("an internal mistake")  # a ValueError that is not a library error

    monkeypatch.setattr(fakedetect.data.inspect, "inspect_data", broken)
    res = _run("inspect", tiny_data)
    assert res.exit_code == EXIT_BUG
    assert "Traceback" in res.output and "an internal mistake" in res.output and "this is a bug" in res.output


def test_expected_errors_are_one_line_and_debug_shows_the_traceback(tmp_path):
    res = _run("inspect", tmp_path / "missing")
    assert res.exit_code == 1 and "data not found" in res.output and "Traceback" not in res.output
    res = _run("--debug", "inspect", tmp_path / "missing")
    assert res.exit_code == 1 and "data not found" in res.output and "Traceback" in res.output


# -- options validated at parse time --------------------------------------------------------------------------------

@pytest.mark.parametrize("cmd", ["predict", "evaluate", "robustness"])
def test_batch_size_zero_is_a_usage_error(cmd, tiny_run, tiny_data):
    args = [cmd, tiny_run, tiny_data] if cmd == "predict" else [cmd, tiny_run, "--data", tiny_data]
    res = _run(*args, "--batch-size", "0")
    assert res.exit_code == 2 and "--batch-size" in res.output and "0 is not in the range" in res.output


def test_out_paths_of_the_wrong_kind_are_refused_before_any_work(tiny_run, tiny_data, tmp_path):
    a_file = tmp_path / "a-file.txt"
    a_file.write_text("mine")
    for args in (["train", "--data", tiny_data, "--out", a_file, *TINY],
                 ["evaluate", tiny_run, "--data", tiny_data, "--out", a_file],
                 ["inspect", tiny_data, "--json", tmp_path]):
        res = _run(*args)
        assert res.exit_code == 2, (args, res.output)
        assert "is a file" in res.output or "is a directory" in res.output
        assert "checked" not in res.output  # no data scan happened
    assert a_file.read_text() == "mine"


def test_serve_checks_port_and_workers_before_saying_it_serves(tiny_run):
    res = _run("serve", tiny_run, "--port", "99999")
    assert res.exit_code == 2 and "99999 is not in the range" in res.output
    res = _run("serve", tiny_run, "--workers", "0")
    assert res.exit_code == 2 and "--workers" in res.output
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = _run("serve", tiny_run, "--port", port)
    assert res.exit_code == 1 and "cannot serve on 127.0.0.1" in res.output and "serving" not in res.output


def test_serve_runs_gunicorn_without_a_control_socket_in_home(tiny_run, monkeypatch):
    seen = {}
    monkeypatch.setattr(os, "execvpe", lambda file, args, env: seen.update(args=args, env=env))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = _run("serve", tiny_run, "--port", port)
    assert res.exit_code == 0, res.output
    assert "--no-control-socket" in seen["args"] and seen["env"]["FAKEDETECT_RUN_DIR"] == str(tiny_run.resolve())


# -- a failed train never blocks its retry ----------------------------------------------------------------------------

@pytest.mark.parametrize("bad,message", [
    (["--unfreeze", "block99"], "block99"),
    (["--weights", "missing.h5"], "weights file not found"),
    (["--epochs-frozen", "0", "--epochs-finetune", "0"], "at least 1"),
])
def test_train_fails_before_the_run_folder_and_the_fixed_command_is_not_blocked(tiny_data, tmp_path, bad, message):
    run = tmp_path / "run"
    res = _run("train", "--data", tiny_data, "--out", run, *TINY, *bad)
    assert res.exit_code == 1 and message in res.output and "Traceback" not in res.output
    assert "checked" not in res.output and not run.exists()


def test_a_run_that_fails_in_its_first_epoch_leaves_no_folder(tiny_data, tmp_path, monkeypatch):
    import fakedetect.training.phases

    def boom(*a, **k):
        raise RuntimeError("out of memory, say")

    monkeypatch.setattr(fakedetect.training.phases, "features", boom)
    run = tmp_path / "run"
    res = _run("train", "--data", tiny_data, "--out", run, *TINY)
    assert res.exit_code == EXIT_BUG and "out of memory" in res.output
    assert not run.exists()


# -- nonsense runs are flagged ----------------------------------------------------------------------------------------

def test_tiny_validation_is_warned_about_and_not_calibrated(tiny_run):
    card = json.loads((tiny_run / "model.json").read_text())
    assert card["data"]["val"] == {"real": 3, "fake": 3}
    assert card["calibration"]["temperature"] == 1.0 and "skipped" in card["calibration"]
    assert card["threshold"] == 0.5 and "too small" in card["threshold_rule"]


def test_predict_with_nothing_readable_exits_non_zero(tiny_run, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.jpg").write_text("not an image")
    for folder in (empty, tmp_path / "notes"):
        res = _run("predict", tiny_run, folder)
        assert res.exit_code == 1 and "no readable image" in res.output


# -- data integrity: caches keyed on content, evaluation on training data flagged ------------------------------------

def test_two_folders_with_one_name_get_their_own_holdout(tmp_path, monkeypatch, caplog):
    from fakedetect.data.synthetic import make_synthetic_dataset
    from fakedetect.demo import holdout_root

    monkeypatch.setenv("FAKEDETECT_CACHE", str(tmp_path / "cache"))
    a = make_synthetic_dataset(tmp_path / "small", n_per_class=10, size=16, seed=1)
    b = make_synthetic_dataset(tmp_path / "alt" / "small", n_per_class=10, size=16, seed=2)
    caplog.set_level(logging.INFO, logger="fakedetect")
    ha, hb = holdout_root(a), holdout_root(b)
    assert ha != hb and sum("holding out" in m for m in caplog.messages) == 2
    for root, split in ((a, ha), (b, hb)):
        for link in split.rglob("*.*"):
            if link.is_symlink():
                assert Path(os.readlink(link)).is_relative_to(root.resolve()), (link, root)
    caplog.clear()
    assert holdout_root(a) == ha and "reusing" in caplog.messages[0]
    (a / "real" / "new.png").write_bytes((a / "real" / "real (1).png").read_bytes())  # the folder changed
    assert holdout_root(a) != ha


def test_an_archive_replaced_under_the_same_name_is_extracted_again(tmp_path, monkeypatch):
    import tarfile

    from fakedetect.data.archive import resolve_data
    from fakedetect.data.synthetic import make_synthetic_dataset

    monkeypatch.setenv("FAKEDETECT_CACHE", str(tmp_path / "cache"))
    archive = tmp_path / "d.tar.gz"
    for seed in (1, 2):
        src = make_synthetic_dataset(tmp_path / f"src{seed}", n_per_class=3 + seed, size=16, seed=seed)
        with tarfile.open(archive, "w:gz") as t:
            t.add(src, arcname="d")
        out = resolve_data(archive)
        assert len(list((out / "d" / "real").iterdir())) == 3 + seed


def test_evaluating_on_training_data_is_flagged(tiny_run, tiny_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    from fakedetect.data.synthetic import make_synthetic_dataset

    new = make_synthetic_dataset(tmp_path / "new", n_per_class=4, size=48, seed=99)
    for cls in ("real", "fake"):
        for f in (new / cls).iterdir():
            shutil.copy(f, data / cls / f"new-{f.name}")
    out = tmp_path / "eval"
    res = _run("evaluate", tiny_run, "--data", data, "--out", out)
    assert res.exit_code == 0, res.output
    assert "WARNING: 24 of 32 test images (75.0%) are byte-identical" in res.output
    assert "on the 8 images it never saw" in res.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["overlap_with_training"]["n"] == 24 and m["overlap_with_training"]["metrics_without_overlap"]["n"] == 8
    assert "byte-identical" in (out / "report.html").read_text()
    only_train = tmp_path / "only-train"
    shutil.copytree(new, only_train / "train")
    res = _run("evaluate", tiny_run, "--data", only_train, "--out", tmp_path / "eval2")
    assert res.exit_code == 0 and "scoring split 'train'" in res.output and "only a 'train' split" in res.output


# -- what the user sees -----------------------------------------------------------------------------------------------

def test_tensorflow_start_up_chatter_is_hidden_unless_verbose(tiny_run, tiny_data):
    img = next((tiny_data / "real").glob("*.png"))
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    quiet = subprocess.run([sys.executable, "-m", "fakedetect", "predict", str(tiny_run), str(img)],
                           capture_output=True, text=True, env=env)
    assert quiet.returncode == 0, quiet.stderr
    assert "absl::InitializeLog" not in quiet.stderr and "oneDNN" not in quiet.stderr
    loud = subprocess.run([sys.executable, "-m", "fakedetect", "predict", str(tiny_run), str(img), "-v"],
                          capture_output=True, text=True, env=env)
    assert loud.returncode == 0 and "oneDNN" in loud.stderr  # the filter is what hides them


def test_outputs_respect_the_umask(tiny_run, tmp_path):
    from fakedetect.atomic import write_text

    old = os.umask(0o022)
    try:
        write_text(tmp_path / "a.txt", "x")
        res = _run("predict", tiny_run, tiny_run / "training_curves.png", "--out", tmp_path / "p.csv")
    finally:
        os.umask(old)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "p.csv").stat().st_mode & 0o777 == 0o644
    assert (tiny_run / "model.keras").stat().st_mode & 0o044  # readable by others under a usual umask


def test_help_names_presets_defaults_and_perturbations():
    train_help = _run("train", "--help").output
    assert "cifake-cpu" in train_help and "EfficientNet-B4 at 380 px" in train_help
    for flag in ("--batch-size", "--lr-frozen", "--lr-finetune"):
        assert flag in train_help
    assert "else 32" in train_help and "else 0.001" in train_help
    assert "jpeg_q50" in _run("robustness", "--help").output
    res = _run("configs")
    assert res.exit_code == 0 and "cifake-cpu" in res.output and "cifake-cpu.yaml" in res.output
    res = _run("robustness", "r", "--data", "d", "--only", "jpeg_q42")
    assert res.exit_code == 2 and "jpeg_q50" in res.output


def test_inspect_writes_no_plot_unasked(tiny_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _run("inspect", tiny_data).exit_code == 0
    assert list(tmp_path.iterdir()) == []
    assert _run("inspect", tiny_data, "--plot", tmp_path / "dist.png").exit_code == 0
    assert (tmp_path / "dist.png").stat().st_size > 1000


def test_cache_list_and_clear(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("FAKEDETECT_CACHE", str(cache))
    (cache / "datasets" / "a-123").mkdir(parents=True)
    (cache / "datasets" / "a-123" / "x.bin").write_bytes(b"\0" * 5000)
    (cache / "weights").mkdir()
    (cache / "weights" / "w.npz").write_bytes(b"\0" * 300)
    res = _run("cache", "list")
    assert res.exit_code == 0 and "a-123" in res.output and "4.9 KB" in res.output and "total" in res.output
    res = _run("cache", "clear", "--kind", "datasets", input="n\n")
    assert res.exit_code == 1 and (cache / "datasets" / "a-123").exists()  # declined
    res = _run("cache", "clear", "--kind", "datasets", "--yes")
    assert res.exit_code == 0 and not (cache / "datasets" / "a-123").exists() and (cache / "weights" / "w.npz").exists()
