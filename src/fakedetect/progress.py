"""Progress of long loops over files and images: a bar when the output is a terminal, otherwise a log line
every half minute. Messages go through :mod:`logging` (logger ``fakedetect``): the CLI shows them, a library
user or a test decides."""

from __future__ import annotations

import logging
import sys
import time

EVERY_S = 30.0


class Progress:
    """Reports ``done`` of ``total`` for one loop: ``with Progress("checked files", n, log) as p: p.update(i)``."""
    def __init__(self, what: str, total: int, logger: logging.Logger, every_s: float = EVERY_S):
        self.what, self.total, self.logger, self.every_s = what, total, logger, every_s
        self.t0 = self.t_last = time.perf_counter()
        self.done = 0
        self.bar = None
        if total and logger.isEnabledFor(logging.INFO) and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=f"  {what}", leave=False, file=sys.stderr, dynamic_ncols=True)

    def update(self, done: int) -> None:
        if self.bar is not None:
            self.bar.update(done - self.done)
        self.done = done
        now = time.perf_counter()
        if self.bar is None and now - self.t_last >= self.every_s and done < self.total:
            self.t_last = now
            self.logger.info(f"  {self.what}: {done}/{self.total}, {now - self.t0:.0f}s")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.total and time.perf_counter() - self.t0 >= self.every_s:
            self.logger.info(f"  {self.what}: {self.done}/{self.total}, {time.perf_counter() - self.t0:.0f}s")

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
