"""`fakedetect serve`: the web app under gunicorn (or Flask's server with --dev)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from fakedetect.cli.main import (
    PORT,
    check_run,
    echo,
    engine_option,
    friendly_errors,
    main,
    prepare_graph,
    tensorflow,
    verbose_option,
)


def check_port(host: str, port: int) -> None:
    """Fails with one line when the address cannot be bound (in use, or not an address of this machine)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise click.BadParameter(f"cannot resolve {host!r}: {e.strerror}", param_hint="--host") from None
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn does: TIME_WAIT is no conflict
        try:
            s.bind(addr)
        except OSError as e:
            raise click.ClickException(f"cannot serve on {host}:{port}: {e.strerror} "
                                       "(is another server using it? choose another --port)") from None


def prepare_engine(run_dir: Path, engine: str, workers: int, verbose: int) -> str:
    """Resolves ``auto``; for ONNX Runtime, makes the run's graph now (:func:`prepare_graph`), before gunicorn starts
    its workers, and gives each worker cores // workers intra-op threads unless $FAKEDETECT_ORT_THREADS is set.

    The same share of the cores for numpy's BLAS in each worker (the domain check's products), unless
    $OPENBLAS_NUM_THREADS or $MKL_NUM_THREADS is set: BLAS otherwise starts a thread per core in every worker,
    and workers x cores threads spinning for a few small products slow every request down."""
    from fakedetect.engine import cores

    engine = prepare_graph(run_dir, engine, verbose)
    share = str(max(1, cores() // workers))
    if engine == "onnxruntime":
        os.environ.setdefault("FAKEDETECT_ORT_THREADS", share)
    for name in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, share)
    # TensorFlow's oneDNN allocator keeps a pool the size of the largest upload's tensors and never gives it back
    # (a worker grew 19% over 10,000 fuzzed uploads, the heap trim notwithstanding); the system allocator returns it
    # (TensorFlow engine under load: a third fewer requests/s; =false for them; benchmarks/RESULTS.md, issue 22).
    os.environ.setdefault("TF_ONEDNN_USE_SYSTEM_ALLOCATOR", "true")
    return engine


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind (0.0.0.0 exposes the app to the network).")
@click.option("--port", type=PORT, default=8000, show_default=True)
@click.option("--allowed-host", "allowed_hosts", multiple=True, metavar="NAME",
              help="A host name clients reach the server by (repeatable; '.example.org' covers its subdomains; "
                   "'*' any). IP addresses, localhost and this machine's names are always accepted; other names "
                   "are refused, which stops DNS-rebinding pages.")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="gunicorn worker processes (each loads the model).")
@click.option("--dev", is_flag=True, help="Flask's development server instead of gunicorn.")
@engine_option
@verbose_option
@friendly_errors
def serve(run_dir, host, port, allowed_hosts, workers, dev, engine, verbose):
    """Serve the upload page and the JSON API for RUN_DIR's model (gunicorn)."""
    check_run(run_dir)
    check_port(host, port)
    engine = prepare_engine(run_dir, engine, workers, verbose)
    # The name it binds is one clients use (an IP address is accepted anyway); names already set stay.
    names = [n for n in os.environ.get("FAKEDETECT_ALLOWED_HOSTS", "").split(",") if n] + [*allowed_hosts, host]
    os.environ["FAKEDETECT_ALLOWED_HOSTS"] = ",".join(names)
    if dev:
        tensorflow(verbose)
        from fakedetect.web import create_app

        app = create_app(run_dir, {"ENGINE": engine})
        echo(f"fakedetect: serving {run_dir} ({engine}) at http://{host}:{port}/  (API: /api/v1/predict, health: "
             "/healthz)")
        app.run(host=host, port=port, threaded=True)
        return
    echo(f"fakedetect: serving {run_dir} ({engine}) at http://{host}:{port}/  (API: /api/v1/predict, health: "
         "/healthz)")
    env = dict(os.environ, FAKEDETECT_RUN_DIR=str(Path(run_dir).resolve()), FAKEDETECT_ENGINE=engine)
    if verbose:
        env["FAKEDETECT_VERBOSE"] = "1"
    # No control socket: gunicorn would otherwise create ~/.gunicorn/gunicorn.ctl in the user's home.
    args = [sys.executable, "-m", "gunicorn", "--workers", str(workers), "--bind", f"{host}:{port}",
            "--timeout", "120", "--graceful-timeout", "10", "--no-control-socket",
            "fakedetect.web:create_app_from_env()"]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe(args[0], args, env)
