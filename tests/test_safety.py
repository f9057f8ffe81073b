"""Weights files are data, never code: a crafted checkpoint is refused before it runs anything or makes a run."""

import io
import pickle
import zipfile

import pytest
from click.testing import CliRunner

from fakedetect.cli.main import main
from fakedetect.errors import WeightsError
from fakedetect.models.registry import check_weights_file
from fakedetect.models.torch_checkpoint import load_state_dict


class _Evil:
    """Unpickling this calls os.system: the classic hostile checkpoint."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.system, (f"touch '{self.marker}'",))


def _legacy_pth(path, marker, where: str):
    """A legacy-format .pth whose first pickle (the magic number) or state dict is hostile."""
    buf = io.BytesIO()
    if where == "magic":
        pickle.dump(_Evil(marker), buf)
    else:
        pickle.dump(0x1950A86A20F9469CFC6C, buf)
        pickle.dump(1001, buf)
        pickle.dump({"protocol_version": 1001}, buf)
        pickle.dump({"_conv_stem.weight": _Evil(marker)}, buf)
    path.write_bytes(buf.getvalue())
    return path


def _zip_pth(path, marker):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"_conv_stem.weight": _Evil(marker)}))
        z.writestr("archive/version", "3\n")
    return path


@pytest.mark.parametrize("make", [
    lambda p, m: _legacy_pth(p, m, "magic"),
    lambda p, m: _legacy_pth(p, m, "state_dict"),
    _zip_pth,
], ids=["legacy-first-pickle", "legacy-state-dict", "zip"])
def test_hostile_pth_is_refused_and_runs_nothing(tmp_path, make):
    marker = tmp_path / "MARKER"
    evil = make(tmp_path / "evil.pth", marker)
    pickle.loads(pickle.dumps(_Evil(tmp_path / "proof")))  # the payload works when unpickled plainly...
    assert (tmp_path / "proof").exists()
    with pytest.raises(WeightsError, match="refusing to load posix.system|refusing to load os.system"):
        load_state_dict(evil)  # ...and is refused here
    assert not marker.exists()


def test_train_with_hostile_weights_fails_before_any_run_folder(tiny_data, tmp_path):
    marker = tmp_path / "MARKER"
    evil = _legacy_pth(tmp_path / "evil.pth", marker, "magic")
    run = tmp_path / "run"
    res = CliRunner().invoke(main, ["train", "--data", str(tiny_data), "--backbone", "efficientnet-lite0",
                                    "--weights", str(evil), "--out", str(run), "--image-size", "48"])
    assert res.exit_code == 1, res.output
    assert "refusing to load" in res.output and "Traceback" not in res.output
    assert "checked" not in res.output  # refused before the data scan
    assert not marker.exists() and not run.exists()


def test_not_a_checkpoint_and_wrong_backbone_are_clear(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00\x01 not a pickle at all")
    with pytest.raises(WeightsError, match="not a readable PyTorch checkpoint"):
        check_weights_file("efficientnet-lite0", junk)
    with pytest.raises(WeightsError, match="Lite backbones only"):
        check_weights_file("efficientnet-b0", junk)
    with pytest.raises(WeightsError, match="unknown weights format"):
        check_weights_file("efficientnet-lite0", tmp_path.joinpath("w.bin").write_bytes(b"x") and tmp_path / "w.bin")
    with pytest.raises(WeightsError, match="not found"):
        check_weights_file("efficientnet-lite0", tmp_path / "missing.h5")


def test_keras_file_with_a_lambda_is_refused_and_runs_nothing(tmp_path):
    import keras

    marker = tmp_path / "MARKER"
    code = f"lambda x: (open({str(marker)!r}, 'w').close(), x)[1]"
    inp = keras.Input((8, 8, 3))
    model = keras.Model(inp, keras.layers.Lambda(eval(code))(keras.layers.Conv2D(2, 1)(inp)))
    marker.unlink()  # building the model ran the lambda once
    path = tmp_path / "with_lambda.keras"
    model.save(path)
    with pytest.raises(WeightsError, match="Lambda layer"):
        check_weights_file("efficientnet-b0", path)
    assert not marker.exists()
    plain = tmp_path / "plain.keras"
    keras.Model(inp, keras.layers.Conv2D(2, 1)(inp)).save(plain)
    assert check_weights_file("efficientnet-b0", plain) == plain  # no Lambda: accepted (weights only are read)
