from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fakedetect import CLASS_NAMES
from fakedetect.data.checks import check_image
from fakedetect.data.layout import discover
from fakedetect.data.splits import carve_validation, subsample, to_split
from fakedetect.errors import DataError

from .conftest import write_bad_files


def _img(path: Path, mode="RGB", fmt=None, size=(20, 16)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, 128 if mode in ("L", "P") else (128,) * len(mode)).save(path, fmt)
    return path


@pytest.mark.parametrize("real,fake", [("real", "fake"), ("REAL", "FAKE"), ("Real", "Fake"),
                                       ("0_real", "1_fake")])
def test_class_folder_names_and_fixed_labels(tmp_path, real, fake):
    _img(tmp_path / real / "a.png")
    _img(tmp_path / fake / "b.png")
    layout = discover(tmp_path)
    assert list(layout) == ["all"]
    assert layout["all"][0][0].parent.name == real
    assert layout["all"][1][0].parent.name == fake


def test_alphabetical_trap_fake_is_one(tmp_path):
    # Alphabetically "fake" < "real"; Keras' default would label fake = 0. We must not.
    _img(tmp_path / "fake" / "x.png")
    _img(tmp_path / "real" / "y.png")
    _img(tmp_path / "real" / "z.png")
    split = to_split("all", discover(tmp_path)["all"])
    labels = dict(zip([Path(p).name for p in split.paths], split.labels, strict=True))
    assert labels == {"x.png": 1, "y.png": 0, "z.png": 0}
    assert CLASS_NAMES == ("real", "fake")


def test_split_layout(tmp_path):
    for s in ("train", "validation", "test"):
        _img(tmp_path / s / "real" / "a.png")
        _img(tmp_path / s / "fake" / "b.png")
    assert sorted(discover(tmp_path)) == ["test", "train", "val"]


def test_missing_and_empty_class_are_clear_errors(tmp_path):
    _img(tmp_path / "real" / "a.png")
    with pytest.raises(DataError, match="missing class folder 'fake/'"):
        discover(tmp_path)
    (tmp_path / "fake").mkdir()
    with pytest.raises(DataError, match="empty"):
        discover(tmp_path)
    with pytest.raises(DataError, match="not found"):
        discover(tmp_path / "nope")
    with pytest.raises(DataError, match="no class folders"):
        discover(tmp_path / "real")


def test_formats_recognised_by_content_not_extension(tmp_path):
    cases = {
        "png_named.jpg": ("RGB", "PNG"),
        "photo (10).jpg": ("RGB", "JPEG"),
        "grey.png": ("L", "PNG"),
        "alpha.png": ("RGBA", "PNG"),
        "pic.webp": ("RGB", "WEBP"),
        "pic.bmp": ("RGB", "BMP"),
        "anim.gif": ("P", "GIF"),
    }
    for name, (mode, fmt) in cases.items():
        info = check_image(_img(tmp_path / name, mode, fmt))
        assert info.error is None, (name, info.error)
        assert info.format == fmt
    assert check_image(tmp_path / "pic.bmp").tf_decodable is False
    assert check_image(tmp_path / "png_named.jpg").tf_decodable is True


def test_bad_files_are_skipped_and_listed(tmp_path):
    for i in range(3):
        _img(tmp_path / "real" / f"r{i}.png")
        _img(tmp_path / "fake" / f"f{i}.jpg", fmt="JPEG")
    expected = write_bad_files(tmp_path / "fake")
    split = to_split("all", discover(tmp_path)["all"])
    assert split.counts() == {"real": 3, "fake": 3}
    reasons = {Path(p).name: why for p, why in split.skipped}
    assert set(reasons) == set(expected)
    for name, fragment in expected.items():
        assert fragment in reasons[name], (name, reasons[name])


def test_class_with_only_bad_files_is_an_error(tmp_path):
    _img(tmp_path / "real" / "r.png")
    write_bad_files(tmp_path / "fake")
    with pytest.raises(DataError, match="no readable 'fake'"):
        to_split("all", discover(tmp_path)["all"])


def test_validation_carve_is_stratified_and_seeded(tmp_path):
    for i in range(40):
        _img(tmp_path / "real" / f"r{i}.png")
    for i in range(20):
        _img(tmp_path / "fake" / f"f{i}.png")
    split = to_split("all", discover(tmp_path)["all"])
    tr, va = carve_validation(split, 0.25, seed=1)
    assert va.counts() == {"real": 10, "fake": 5}
    assert tr.counts() == {"real": 30, "fake": 15}
    assert not set(tr.paths) & set(va.paths)
    _, va2 = carve_validation(split, 0.25, seed=1)
    assert va2.paths == va.paths
    _, va3 = carve_validation(split, 0.25, seed=2)
    assert va3.paths != va.paths


def test_subsample_caps_each_class():
    files = {0: [Path(f"r{i}") for i in range(10)], 1: [Path(f"f{i}") for i in range(3)]}
    sub = subsample(files, 5, seed=0)
    assert len(sub[0]) == 5 and len(sub[1]) == 3
    assert sub == subsample(files, 5, seed=0)


def test_archive_is_extracted_once(tmp_path):
    import tarfile

    from fakedetect.data.archive import resolve_data

    _img(tmp_path / "src" / "train" / "real" / "a b (1).png")
    _img(tmp_path / "src" / "train" / "fake" / "c.png")
    arc = tmp_path / "d.tar.gz"
    with tarfile.open(arc, "w:gz") as t:
        t.add(tmp_path / "src" / "train", arcname="train")
    out = resolve_data(arc, cache=tmp_path / "cache")
    assert (out / "train" / "real" / "a b (1).png").is_file()
    assert resolve_data(arc, cache=tmp_path / "cache") == out
    layout = discover(out)
    assert {k: len(v) for k, v in layout["train"].items()} == {0: 1, 1: 1}
    assert np.all([p.exists() for p in layout["train"][0]])
