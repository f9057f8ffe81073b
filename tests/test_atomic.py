import pytest

from fakedetect.atomic import atomic_path, fresh_dir, write_json


def test_interrupted_write_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "metrics.json"
    write_json(target, {"ok": 1})
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_text('{"half": ')
        raise KeyboardInterrupt  # the process is interrupted mid-write
    assert target.read_text().strip().endswith("}") and '"ok": 1' in target.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_fresh_dir_refuses_a_used_folder(tmp_path):
    d = tmp_path / "out"
    fresh_dir(d, overwrite=False)
    (d / "x").write_text("user's")
    with pytest.raises(FileExistsError, match="already exists"):
        fresh_dir(d, overwrite=False)
    assert fresh_dir(d, overwrite=True) == d and (d / "x").read_text() == "user's"
