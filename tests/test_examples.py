"""The Kubernetes example launches the very command the CLI accepts, on the replicas it says."""

import re
import shlex
from pathlib import Path

import yaml

from fakedetect.cli.main import main

TFJOB = Path(__file__).resolve().parents[1] / "examples" / "kubernetes" / "tfjob.yaml"


def test_tfjob_runs_fakedetect_multi_worker_on_two_replicas():
    job = yaml.safe_load(TFJOB.read_text())
    assert job["apiVersion"] == "kubeflow.org/v1" and job["kind"] == "TFJob"
    worker = job["spec"]["tfReplicaSpecs"]["Worker"]
    assert worker["replicas"] == 2
    container = worker["template"]["spec"]["containers"][0]
    assert container["name"] == "tensorflow"
    script = " ".join(container["args"])
    commands = re.findall(r"exec (fakedetect train [^;]*);", script)
    assert len(commands) == 2  # resume, or a first run
    first = shlex.split(next(c for c in commands if "--data" in c))
    assert "--strategy" in first and first[first.index("--strategy") + 1] == "multi-worker"
    for cmd in commands:  # both parse with the real CLI (no option it does not know, every value valid)
        args = shlex.split(cmd)[1:]
        ctx = main.make_context("fakedetect", list(args))
        sub = main.get_command(ctx, args[0])
        sub.make_context(args[0], args[1:], parent=ctx)
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/data", "/runs"} <= mounts and any(c.count("/runs/cifake") for c in commands)
