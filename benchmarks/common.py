"""Helpers shared by the benchmark scripts: data, machine description, markdown tables."""

from __future__ import annotations

import logging
import os
import platform
from pathlib import Path

HERE = Path(__file__).resolve().parent
CIFAKE = HERE.parent.parent / "shared" / "data" / "cifake-train.tar.gz"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.node()}: {os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def cifake_subset(n_per_class: int, seed: int = 0, archive: Path = CIFAKE):
    """A stratified subset of CIFAKE's training archive as a checked Split (extracted once to the cache)."""
    from fakedetect.data.archive import resolve_data
    from fakedetect.data.layout import discover
    from fakedetect.data.splits import subsample, to_split

    root = resolve_data(archive)
    layout = discover(root)
    return to_split("bench", subsample(layout["train"], n_per_class, seed))


def table(rows: list[dict], cols: list[str]) -> str:
    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


# The library reports progress through logging (logger "fakedetect"): shown on stderr, the tables on stdout.
logging.basicConfig(level=logging.WARNING, format="%(message)s")
logging.getLogger("fakedetect").setLevel(logging.INFO)
