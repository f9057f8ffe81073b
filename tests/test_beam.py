"""Issue 26: scoring at archive scale on Apache Beam (`fakedetect sweep`). The pipeline must give, file by file, the
verdicts `fakedetect predict` gives, score every file once (overlapping globs), list bad files with their reasons, and
do so in Beam's multi-process DirectRunner too."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from fakedetect.cli import main
from fakedetect.engine import model_hash

from .conftest import tf_rejected_jpeg, write_bad_files

beam = pytest.importorskip("apache_beam")

from apache_beam.io.localfilesystem import LocalFileSystem  # noqa: E402

from fakedetect import beam as fdbeam  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "beam"


@pytest.fixture(scope="module")
def collection(tiny_data, tmp_path_factory) -> Path:
    """Good images of both classes in nested folders, every kind of bad file, a non-image, a hidden file."""
    root = tmp_path_factory.mktemp("collection") / "images"
    shutil.copytree(tiny_data / "fake", root / "test" / "fake")
    shutil.copytree(tiny_data / "real", root / "more" / "real")
    bad = write_bad_files(root / "bad")
    (root / "bad" / "tf_rejected.jpg").write_bytes(tf_rejected_jpeg())
    (root / "readme.txt").write_text("not an image")
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")  # predict does not list hidden files; neither does sweep
    assert len(bad) >= 4
    return root


@pytest.fixture(scope="module")
def beam_run(calibrated_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("beam") / "run"
    shutil.copytree(calibrated_run, out)
    return out


def _predict(run: Path, folder: Path, engine: str, tmp: Path) -> dict:
    out = tmp / f"predict-{engine}.json"
    res = CliRunner().invoke(main, ["predict", str(run), str(folder), "--out", str(out), "--engine", engine])
    assert res.exit_code == 0, res.output
    return json.loads(out.read_text())


def _sweep(args: list[str]):
    return CliRunner().invoke(main, ["sweep", *args])


def _same_verdicts(prefix: Path, expected: dict, run: Path) -> None:
    """The sweep at ``prefix`` holds predict's rows (each file once) and its unreadable files, reasons included."""
    rows = fdbeam.read_rows(str(prefix))
    assert rows["path"].is_unique
    want = {r["path"]: r for r in expected["predictions"]}
    assert set(rows["path"]) == set(want) and len(want) >= 20
    threshold = expected["threshold"]
    for r in rows.to_dict(orient="records"):
        w = want[r["path"]]
        assert r["prob_fake"] == pytest.approx(w["prob_fake"], abs=1e-6)
        assert r["prob_real"] == pytest.approx(1 - w["prob_fake"], abs=1e-6)
        assert r["domain_distance"] == pytest.approx(w["domain_distance"], rel=1e-6)
        assert r["in_domain"] == w["in_domain"] and r["engine"] == w["engine"]
        if abs(w["prob_fake"] - threshold) > 1e-6:
            assert r["label"] == w["label"]
    assert set(rows["run_id"]) == {model_hash(run)[:16]}
    assert sorted(fdbeam.read_skipped(str(prefix))) == sorted((u["path"], u["reason"]) for u in expected["unreadable"])
    summary = json.loads((prefix / "summary.json").read_text())
    assert summary["counts"] == {"scored": len(want), "skipped": len(expected["unreadable"]),
                                 "fake": sum(r["label"] == "fake" for r in want.values()),
                                 "out_of_domain": sum(r["in_domain"] is False for r in want.values())}
    assert summary["run_id"] == model_hash(run)[:16]


def test_sweep_gives_predicts_verdicts_once_per_file_and_lists_the_bad_files(beam_run, collection, tmp_path):
    expected = _predict(beam_run, collection, "tensorflow", tmp_path)
    assert len(expected["unreadable"]) >= 6  # the bad files, the TF-rejected JPEG and the text file
    prefix = tmp_path / "out" / "day"
    # the folder, and a glob that overlaps it, spelt relative to here: its files are scored once
    overlap = os.path.relpath(collection / "test" / "fake", Path.cwd()) + "/*"
    (tmp_path / "out" / "day-2").mkdir(parents=True)
    other = tmp_path / "out" / "day-2" / "verdicts-00000-of-00001.csv"  # another sweep's, in another folder
    other.write_text("kept\n")
    res = _sweep([str(beam_run), str(collection), overlap, "--out", str(prefix),
                  "--engine", "tensorflow", "--batch-size", "8"])
    assert res.exit_code == 0, res.output
    assert f"{len(expected['predictions'])} scored" in res.output
    _same_verdicts(prefix, expected, beam_run)
    header = next(prefix.glob("verdicts-00000-of-*.csv")).read_text().splitlines()[0]
    assert header == ",".join(fdbeam.COLUMNS)

    again = _sweep([str(beam_run), str(collection), "--out", str(prefix), "--engine", "tensorflow"])
    assert again.exit_code == 1 and "--overwrite" in again.output
    assert fdbeam.output_files(str(prefix)) and str(other) not in fdbeam.output_files(str(prefix))
    assert other.read_text() == "kept\n"


def test_the_multi_process_direct_runner_scores_every_file_exactly_once(beam_run, collection, tmp_path):
    """Two worker processes (the nearest thing to a cluster here), on ONNX Runtime: predict's rows, each file once;
    --overwrite removes the old shards first (a run with fewer shards leaves none of the old ones)."""
    expected = _predict(beam_run, collection, "onnxruntime", tmp_path)
    prefix = tmp_path / "sweep"
    prefix.mkdir()
    for i in range(3):
        (prefix / f"verdicts-0000{i}-of-00003.csv").write_text("old shard\n")
    res = _sweep([str(beam_run), str(collection), str(collection / "more" / "**"), "--out", str(prefix),
                  "--engine", "onnxruntime", "--batch-size", "4", "--threads", "1", "--overwrite",
                  "--direct_num_workers=2", "--direct_running_mode", "multi_processing"])
    assert res.exit_code == 0, res.output
    assert not (prefix / "verdicts-00002-of-00003.csv").exists()
    _same_verdicts(prefix, expected, beam_run)


class _RemoteFS(LocalFileSystem):
    """A Beam filesystem of its own scheme (``fdtest://`` on a local folder): a run that is not a local path."""
    ROOT = ""

    @classmethod
    def scheme(cls):
        return "fdtest"

    @staticmethod
    def _local(path: str) -> str:
        return _RemoteFS.ROOT + "/" + path.split("://", 1)[1]

    def join(self, basepath, *paths):
        return "/".join([basepath.rstrip("/"), *paths])

    def match(self, patterns, limits=None):
        return super().match([self._local(p) for p in patterns], limits)

    def open(self, path, *args, **kwargs):
        return super().open(self._local(path), *args, **kwargs)


def test_a_run_on_another_filesystem_is_staged_once_with_its_graph(beam_run, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKEDETECT_CACHE", str(tmp_path / "cache"))
    shutil.copytree(beam_run, tmp_path / "bucket" / "run")
    (tmp_path / "bucket" / "run" / "engine").mkdir(exist_ok=True)
    (tmp_path / "bucket" / "run" / "engine" / "a-graph.onnx").write_bytes(b"graph")
    monkeypatch.setattr(_RemoteFS, "ROOT", str(tmp_path / "bucket"))
    local = fdbeam.stage_run("fdtest://run")
    assert local.parent == tmp_path / "cache" / "beam-runs"
    assert (local / "model.keras").read_bytes() == (beam_run / "model.keras").read_bytes()
    assert (local / "domain.npz").is_file()
    assert (local / "engine" / "a-graph.onnx").read_bytes() == b"graph"  # a graph made before is not made again
    assert fdbeam.stage_run("fdtest://run") == local  # once
    facts = fdbeam.run_facts("fdtest://run")
    assert facts.run == "fdtest://run" and facts.run_id == model_hash(beam_run)[:16] and facts.threshold == 0.4
    with pytest.raises(fdbeam.RunError, match="no trained model"):
        fdbeam.stage_run("fdtest://nothing-here")


def test_a_batch_that_fails_to_score_lists_its_files_and_fails_nothing_else(beam_run, tiny_data, tmp_path,
                                                                            monkeypatch):
    """RunInference's dead-letter output: a batch whose scoring raises becomes skipped rows with the reason."""
    from fakedetect.run import Run

    real_score = Run.score

    def score(self, *args, names=None, **kwargs):
        if any("(3)" in n for n in names):
            raise RuntimeError("boom")
        return real_score(self, *args, names=names, **kwargs)

    monkeypatch.setattr(Run, "score", score)
    prefix = tmp_path / "v"
    res = _sweep([str(beam_run), str(tiny_data / "real"), "--out", str(prefix), "--engine", "tensorflow",
                  "--batch-size", "1"])
    assert res.exit_code == 0, res.output
    skipped = fdbeam.read_skipped(str(prefix))
    assert skipped and all("(3)" in p and r == "scoring failed: RuntimeError: boom" for p, r in skipped)
    rows = fdbeam.read_rows(str(prefix))
    assert len(rows) + len(skipped) == len(list((tiny_data / "real").iterdir())) and len(rows) > 0


def test_beam_options_pass_through_and_patterns_are_told_apart():
    patterns, options = fdbeam.split_args(["imgs/**", "--project", "p", "--save_main_session", "more/*.jpg",
                                           "--region=europe-west4"])
    assert patterns == ["imgs/**", "more/*.jpg"]
    assert options == ["--project", "p", "--save_main_session", "--region=europe-west4"]
    from apache_beam.options.pipeline_options import GoogleCloudOptions, StandardOptions

    opts = fdbeam.pipeline_options("dataflow", options)
    assert opts.view_as(GoogleCloudOptions).project == "p"
    assert opts.view_as(GoogleCloudOptions).region == "europe-west4"
    assert opts.view_as(StandardOptions).runner == "DataflowRunner"
    with pytest.raises(fdbeam.ConfigError, match="unknown option --projcet"):
        fdbeam.split_args(["imgs/**", "--projcet", "p"])
    with pytest.raises(fdbeam.ConfigError, match="direct_num_workers"):  # one line, not argparse's usage and exit
        fdbeam.split_args(["imgs/**", "--direct_num_workers=x"])


def test_bad_patterns_runs_and_a_missing_extra_are_one_line_errors(beam_run, tmp_path, monkeypatch):
    res = _sweep([str(beam_run), str(tmp_path / "nothing" / "*.jpg"), "--out", str(tmp_path / "v")])
    assert res.exit_code == 1 and "no file matches" in res.output
    res = _sweep([str(tmp_path / "no-run"), str(tmp_path), "--out", str(tmp_path / "v")])
    assert res.exit_code == 1 and "run folder not found" in res.output
    monkeypatch.setattr(fdbeam, "beam", None)
    res = _sweep([str(beam_run), str(tmp_path), "--out", str(tmp_path / "v")])
    assert res.exit_code == 1 and 'pip install -e ".[beam]"' in res.output
    assert not (tmp_path / "v").exists()


def test_hidden_files_are_left_out_as_predict_leaves_them():
    assert fdbeam._hidden("/data/imgs/.git/x.jpg", "/data/imgs/**")
    assert fdbeam._hidden("/data/imgs/sub/.DS_Store", "/data/imgs/**")
    assert not fdbeam._hidden("/data/.cache/imgs/a.jpg", "/data/.cache/imgs/**")  # the user named that folder
    assert not fdbeam._hidden("/data/imgs/.a.jpg", "/data/imgs/.a.jpg")  # a file named outright
    assert not fdbeam._hidden("/data/imgs/.a.jpg", "/data/imgs/.a*")  # a pattern that names hidden files
    assert fdbeam.as_pattern("gs://bucket/day/") == "gs://bucket/day/**"


def test_a_local_name_with_glob_characters_is_taken_as_it_is(tmp_path):
    from apache_beam.io.filesystems import FileSystems

    (tmp_path / "shots[1]").mkdir()
    (tmp_path / "shots[1]" / "a.jpg").write_bytes(b"x")
    (tmp_path / "shots1").mkdir()
    (tmp_path / "shots1" / "b.jpg").write_bytes(b"x")
    pattern = fdbeam.as_pattern(str(tmp_path / "shots[1]"))
    assert [m.path for m in FileSystems.match([pattern])[0].metadata_list] == [str(tmp_path / "shots[1]" / "a.jpg")]


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.sh")), ids=lambda p: p.name)
def test_the_example_commands_parse(example):
    """Each example's `fakedetect sweep` command: fakedetect's options parse, the rest are Beam's and name a runner
    that is not the DirectRunner, with the options that runner needs."""
    text = example.read_text().replace("\\\n", " ")
    variables = dict(ln.split("=", 1) for ln in text.splitlines() if re.fullmatch(r"[A-Z_]+=\S+", ln))
    lines = [ln for ln in text.splitlines() if ln.strip().startswith("fakedetect sweep")]
    assert len(lines) == 1, f"{example.name}: one `fakedetect sweep` command"
    line = re.sub(r"\$\{?([A-Z_]+)\}?", lambda m: variables[m.group(1)], lines[0])
    words = shlex.split(line)[2:]
    ctx = main.commands["sweep"].make_context("sweep", words)
    assert ctx.params["runner"] in ("dataflow", "flink", "spark", "portable")
    patterns, options = fdbeam.split_args(ctx.params["patterns"])
    assert patterns and all("://" in p for p in patterns)
    opts = fdbeam.pipeline_options(ctx.params["runner"], options).get_all_options(retain_unknown_options=True)
    if ctx.params["runner"] == "dataflow":
        assert opts["project"] and opts["region"] and opts["temp_location"].startswith("gs://")
        assert opts["setup_file"] or opts["requirements_file"] or opts["sdk_container_image"]
    else:
        assert opts["job_endpoint"] or opts.get("flink_master")
        assert opts["environment_type"]


def test_the_module_imports_without_beam():
    import subprocess

    code = ("import sys; sys.modules['apache_beam'] = None; import fakedetect.beam as b; "
            "print(b.beam is None)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP"])
def test_the_sweeps_decode_is_the_pipelines(fmt):
    """The DoFn decodes with decode_now (the decoder chosen in Python): the pixels of the pipeline's decode_bytes."""
    import io

    import numpy as np
    import tensorflow as tf
    from PIL import Image

    from fakedetect.data.pipeline import decode_bytes, decode_now

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (37, 51, 3), dtype=np.uint8)).save(buf, fmt)
    data = buf.getvalue()
    assert np.array_equal(decode_now(data).numpy(), decode_bytes(tf.constant(data)).numpy())
