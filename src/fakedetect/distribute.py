"""tf.distribute strategies for training: one device, every local GPU, or many machines (TF_CONFIG)."""

from __future__ import annotations

import json
import os

from fakedetect.errors import StrategyError

STRATEGIES = ("auto", "one-device", "mirrored", "multi-worker")


def split_cpu(n: int) -> None:
    """Splits the CPU into ``n`` logical devices (to exercise multi-device code without GPUs).

    Must run before TensorFlow initialises its devices; set $FAKEDETECT_LOGICAL_CPUS to have train do it.
    """
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)])


def make_strategy(name: str = "auto", devices: list[str] | None = None):
    """Returns a tf.distribute strategy.

    Args:
        name: ``auto`` (MirroredStrategy when there are several GPUs, else the default), ``one-device``,
            ``mirrored`` (all local GPUs, or ``devices``), ``multi-worker`` (MultiWorkerMirroredStrategy,
            configured by $TF_CONFIG).
        devices: device names for ``one-device`` / ``mirrored``, e.g. ["/gpu:0", "/gpu:1"].
    """
    import tensorflow as tf

    if name not in STRATEGIES:
        raise StrategyError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    n_cpus = int(os.environ.get("FAKEDETECT_LOGICAL_CPUS", "0") or 0)
    if n_cpus > 1:
        split_cpu(n_cpus)
    if name == "multi-worker":
        if "TF_CONFIG" not in os.environ:
            raise StrategyError("--strategy multi-worker needs $TF_CONFIG (the cluster and this worker's task)")
        if not os.environ.get("FAKEDETECT_TRY_MULTI_WORKER"):
            # Checked here with TF 2.21 / Keras 3.15: Keras 3's fit() fails under MultiWorkerMirroredStrategy
            # (strategy.reduce on the first batch, then "Invalid reduction dimension 0" when reducing metrics;
            # tensorflow/tensorflow#72388). Say so before any work instead of crashing in the first epoch.
            raise StrategyError(
                "--strategy multi-worker is not usable with Keras 3 (TensorFlow 2.21): Keras' fit() fails under "
                "MultiWorkerMirroredStrategy (tensorflow/tensorflow#72388). Train on one machine with "
                "--strategy mirrored (all its GPUs); set FAKEDETECT_TRY_MULTI_WORKER=1 to try it anyway.")
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    if name == "auto":
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    if name == "one-device":
        return tf.distribute.OneDeviceStrategy((devices or gpus or ["/cpu:0"])[0])
    return tf.distribute.MirroredStrategy(devices=devices or None)


def is_chief() -> bool:
    """True unless $TF_CONFIG names this process as a non-chief worker (only the chief writes the run)."""
    cfg = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    task = cfg.get("task", {})
    cluster = cfg.get("cluster", {})
    if not task:
        return True
    if task.get("type") == "chief":
        return True
    return task.get("type") == "worker" and int(task.get("index", 0)) == 0 and "chief" not in cluster


def replicas(strategy) -> int:
    return int(strategy.num_replicas_in_sync)
