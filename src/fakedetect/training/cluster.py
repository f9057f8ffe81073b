"""tf.distribute strategies: one device, every local GPU, or many machines (MultiWorkerMirroredStrategy).

The strategy must be created before any other TensorFlow work (MultiWorkerMirroredStrategy configures the
runtime's collective ops when it is made). Machines are described by $TF_CONFIG, as for every tf.distribute
program; :func:`workers_tf_config` builds it from ``--workers host:port,... --task-index N``.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal

from fakedetect.config import STRATEGIES
from fakedetect.errors import StrategyError

__all__ = ["STRATEGIES", "is_chief", "make_strategy", "num_workers", "replicas", "worker_index", "workers_tf_config"]
log = logging.getLogger(__name__)
CLUSTER_TIMEOUT_S = 300  # how long a worker waits for the others to start, and a collective for its peers


def cluster_timeout() -> int:
    """Seconds a worker waits for the others ($FAKEDETECT_CLUSTER_TIMEOUT_S, default 300)."""
    return int(os.environ.get("FAKEDETECT_CLUSTER_TIMEOUT_S", CLUSTER_TIMEOUT_S))


def tf_config() -> dict:
    try:
        return json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    except ValueError as e:
        raise StrategyError(f"$TF_CONFIG is not valid JSON ({e})") from None


def workers_tf_config(workers: list[str], index: int) -> str:
    """$TF_CONFIG for worker ``index`` of ``workers`` (host:port each); worker 0 is the chief."""
    if len(workers) < 2:
        raise StrategyError("--workers needs at least two host:port addresses (one per machine)")
    for w in workers:
        host, _, port = w.rpartition(":")
        if not host or not port.isdigit():
            raise StrategyError(f"--workers: {w!r} is not host:port")
    if not 0 <= index < len(workers):
        raise StrategyError(f"--task-index {index} is not in 0..{len(workers) - 1} (one index per --workers entry)")
    return json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})


def is_chief() -> bool:
    """True unless $TF_CONFIG names this process as a non-chief worker (only the chief writes the run)."""
    cfg = tf_config()
    task, cluster = cfg.get("task", {}), cfg.get("cluster", {})
    if not task or task.get("type") == "chief":
        return True
    return task.get("type") == "worker" and int(task.get("index", 0)) == 0 and "chief" not in cluster


def cluster_workers() -> list[str]:
    cluster = tf_config().get("cluster", {})
    return list(cluster.get("chief", [])) + list(cluster.get("worker", []))


def split_cpu(n: int) -> None:
    """Splits the CPU into ``n`` logical devices (to exercise multi-device code without GPUs).

    Must run before TensorFlow initialises its devices; set $FAKEDETECT_LOGICAL_CPUS to have train do it.
    """
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)])


def make_strategy(name: str = "auto", devices: list[str] | None = None, timeout_s: int | None = None):
    """Returns a tf.distribute strategy.

    Args:
        name: ``auto`` (MirroredStrategy when there are several GPUs, else the default), ``one-device``,
            ``mirrored`` (all local GPUs, or ``devices``), ``multi-worker`` (MultiWorkerMirroredStrategy over
            the machines in $TF_CONFIG).
        devices: device names for ``one-device`` / ``mirrored``, e.g. ["/gpu:0", "/gpu:1"].
        timeout_s: multi-worker only: how long to wait for every worker to join, and for any collective
            (default: :func:`cluster_timeout`).

    Raises:
        StrategyError: an unknown name, no $TF_CONFIG, or workers that did not join within ``timeout_s``.
    """
    import tensorflow as tf

    if name not in STRATEGIES:
        raise StrategyError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    n_cpus = int(os.environ.get("FAKEDETECT_LOGICAL_CPUS", "0") or 0)
    if n_cpus > 1:
        split_cpu(n_cpus)
    if name != "multi-worker" and len(cluster_workers()) > 1:
        raise StrategyError(f"$TF_CONFIG lists {len(cluster_workers())} machines but the strategy is {name!r}: each "
                            "would train on its own. Use --strategy multi-worker (or --workers ... --task-index N)")
    if name == "multi-worker":
        if "TF_CONFIG" not in os.environ:
            raise StrategyError("--strategy multi-worker needs the machines: --workers host:port,host:port "
                                "--task-index N, or $TF_CONFIG (the cluster and this worker's task)")
        return _multi_worker(timeout_s or cluster_timeout())
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    if name == "auto":
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    if name == "one-device":
        return tf.distribute.OneDeviceStrategy((devices or gpus or ["/cpu:0"])[0])
    return tf.distribute.MirroredStrategy(devices=devices or None)


def _multi_worker(timeout_s: int):
    import tensorflow as tf

    # Creating the strategy waits, inside TensorFlow's runtime and holding the GIL, until every worker has
    # joined, with no bound that TensorFlow 2.21 lets us set: a worker that never comes (wrong address, machine
    # down, firewall) would hang the others for ever. A watchdog process ends this one with a message naming
    # the others instead (a thread could not run while TensorFlow holds the GIL).
    me = int(tf_config().get("task", {}).get("index", 0))
    others = [f"{w} (task {i})" for i, w in enumerate(cluster_workers()) if i != me]
    port = cluster_workers()[me].rpartition(":")[2] if me < len(cluster_workers()) else "?"
    # TensorFlow's gRPC server listens on every interface of this machine, without authentication or TLS, and
    # TensorFlow 2.21 offers no way to bind it to one address: say so, every time.
    log.warning(f"multi-worker training opens TensorFlow's gRPC port {port} on every network interface, with no "
                f"authentication: run it on a trusted network only, and firewall the port to the other workers "
                f"({', '.join(w for i, w in enumerate(cluster_workers()) if i != me)})")
    message = (f"Error: waited {timeout_s} s for the other worker(s) to join: {', '.join(others)}. Start "
               "`fakedetect train` with the same --workers on every machine (each with its own --task-index), check "
               "that these addresses are reachable from here, or raise $FAKEDETECT_CLUSTER_TIMEOUT_S.\n")
    joined = _watchdog(timeout_s, message)
    # Collectives during training are bounded too: a worker that dies makes the others fail, not hang.
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout_s)
    try:
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    except (RuntimeError, tf.errors.DeadlineExceededError, tf.errors.UnavailableError,
            tf.errors.InternalError) as e:
        raise StrategyError(f"the workers {', '.join(cluster_workers())} could not form a cluster "
                            f"({str(e).splitlines()[0]})") from None
    finally:
        os.close(joined)  # the watchdog sees the pipe close and exits


def _watchdog(timeout_s: int, message: str) -> int:
    """Forks a process that terminates this one with ``message`` unless the returned pipe is closed within
    ``timeout_s``. The child only waits, writes and signals: safe after TensorFlow has started threads."""
    read_end, write_end = os.pipe()
    parent = os.getpid()
    if os.fork() == 0:  # the watchdog
        os.close(write_end)
        ready, _, _ = select.select([read_end], [], [], timeout_s)
        if not ready:
            os.write(2, message.encode())
            os.kill(parent, signal.SIGKILL)  # TensorFlow's preemption notifier catches SIGTERM
        os._exit(0)
    os.close(read_end)
    return write_end


def replicas(strategy) -> int:
    return int(strategy.num_replicas_in_sync)


def num_workers(strategy) -> int:
    return int(getattr(strategy.extended, "_num_workers", 1) or 1)


def worker_index(strategy) -> int:
    return int(getattr(strategy.extended, "_id_in_cluster", 0) or 0) if num_workers(strategy) > 1 else 0
