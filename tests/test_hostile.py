"""Training and evaluation on a folder seeded with every kind of bad file: the run finishes and lists each."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from fakedetect.cli.main import main
from fakedetect.data.checks import check_image

from .conftest import TINY_TRAIN, tf_rejected_jpeg, write_bad_files


def _seed_hostile(folder):
    expected = write_bad_files(folder)
    (folder / "loop_a.jpg").symlink_to(folder / "loop_b.jpg")
    (folder / "loop_b.jpg").symlink_to(folder / "loop_a.jpg")
    (folder / "dangling.png").symlink_to(folder / "does-not-exist.png")
    os.mkfifo(folder / "pipe.jpg")
    locked = folder / "locked.jpg"
    shutil.copy(next(p for p in folder.parent.glob("*/*.jpg") if p.is_file() and p.stat().st_size > 100), locked)
    locked.chmod(0)
    (folder / "tf_rejects.jpg").write_bytes(tf_rejected_jpeg())
    (folder / "dir_named.jpg").mkdir()
    (folder / "dir_named.jpg" / "inside.txt").write_text("x")
    expected.update({"loop_a.jpg": "cannot read: Too many levels of symbolic links",
                     "loop_b.jpg": "cannot read: Too many levels of symbolic links",
                     "dangling.png": "cannot read: No such file or directory", "pipe.jpg": "not a regular file",
                     "inside.txt": "not an image", "tf_rejects.jpg": "TensorFlow's decoder rejected it"})
    return expected


def test_check_image_never_raises_on_hostile_files(tmp_path):
    expected = _seed_hostile_standalone(tmp_path)
    for name, reason in expected.items():
        info = check_image(next(tmp_path.rglob(name)) if name == "inside.txt" else tmp_path / name, tf_verify=True)
        assert info.error and reason in info.error, (name, info.error)


def _seed_hostile_standalone(tmp_path):
    from PIL import Image

    (tmp_path / "ok").mkdir()
    Image.new("RGB", (20, 20)).save(tmp_path / "ok" / "a.jpg")
    Image.new("RGB", (20, 20), (9, 9, 9)).save(tmp_path / "ok" / "b.jpg", quality=50)
    return _seed_hostile(tmp_path)


def test_train_and_evaluate_finish_and_list_every_bad_file(tiny_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    expected = _seed_hostile(data / "fake")
    run = tmp_path / "run"
    args = ["train", "--data", str(data), "--out", str(run)]
    for k, v in TINY_TRAIN.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    skipped = (run / "skipped.txt").read_text()
    reasons = {Path(line.split("\t")[0]).name: line.split("\t")[1] for line in skipped.splitlines()}
    running_as_root = os.geteuid() == 0  # root reads a chmod-0 file: then it is a usable image, not skipped
    for name, reason in expected.items():
        assert name in reasons and reason in reasons[name], (name, reasons.get(name))
    assert ("locked.jpg" in skipped) != running_as_root
    out = tmp_path / "eval"
    res = CliRunner().invoke(main, ["evaluate", str(run), "--data", str(data), "--out", str(out)])
    assert res.exit_code == 0, res.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["skipped"] == len(expected) + (0 if running_as_root else 1)


def test_predict_and_the_pipeline_skip_a_file_only_tensorflow_rejects(tiny_run, tiny_data, tmp_path):
    from click.testing import CliRunner

    from fakedetect.run import DECODE_FAILED, load_run, predict_raw

    bad = tmp_path / "tf_rejects.jpg"
    bad.write_bytes(tf_rejected_jpeg())
    fine = next((tiny_data / "real").glob("*.jpg"))
    shutil.copy(fine, tmp_path / "fine.jpg")
    res = CliRunner().invoke(main, ["predict", str(tiny_run), str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert f"{bad}: {DECODE_FAILED}" in res.output and "1 scored, 1 unreadable" in res.output
    # Should such a file reach the pipeline anyway, it is dropped (NaN), never an error that ends the run.
    run = load_run(tiny_run)
    raw = predict_raw(run.model, [str(bad), str(fine), str(bad)], run.image_size, batch_size=2)
    assert np.isnan(raw[0]) and np.isnan(raw[2]) and 0 <= raw[1] <= 1
