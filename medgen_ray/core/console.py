"""What a job prints: one live progress display and the job's own lines; everything else (Ray's
per-operator progress logs, its INFO lines, worker output) goes to log files, and to the console
too with `medgen -v`.

`quiet_ray()` runs before Ray starts: Ray's INFO logs off unless verbose, worker output kept on
the workers (Ray writes it under the session's logs folder), the token-authentication notice
(expected: the embedded cluster keeps Ray's default token auth on) filtered at its logger; the
core/dataflow.py does the same for its data library (progress bars, its console handler). `JobProgress` is the one display: sources reached, clips kept /
rejected / errored, elapsed time and an estimate of what is left; redrawn in place on a
terminal, a line every `interval_s` otherwise (CI logs, `ray job submit`).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import TextIO

VERBOSE_ENV = "MEDGEN_VERBOSE"


def verbose() -> bool:
    """Whether `medgen -v` (or MEDGEN_VERBOSE=1) asked for Ray's own output on the console."""
    return os.environ.get(VERBOSE_ENV, "0") not in ("", "0", "false", "False")


class DropExpected(logging.Filter):
    """Ray's notices that say a default we keep is on, or a setting we made is in effect."""

    EXPECTED = ("Token authentication is enabled for this Ray cluster", "Progress bars disabled")

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(e in record.getMessage() for e in self.EXPECTED)


def quiet_ray() -> dict:
    """Console settings for Ray before it starts; returns the extra `ray.init` arguments."""
    from medgen_ray.core.ray_compat import RAY_AUTH_LOGGER

    loud = verbose()
    drop_expected(RAY_AUTH_LOGGER)
    for name in ("ray.serve", "ray.train", "ray.tune"):
        logging.getLogger(name).setLevel(logging.INFO if loud else logging.WARNING)
    return {"log_to_driver": loud, "logging_level": logging.INFO if loud else logging.WARNING}


def drop_expected(logger_name: str) -> None:
    """Filter DropExpected's notices out of a logger (a logger's filters see the records made on it)."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, DropExpected) for f in logger.filters):
        logger.addFilter(DropExpected())


def ray_data_logging_config() -> str:
    """Our console-quiet copy of Ray Data's logging config (for RAY_DATA_LOGGING_CONFIG)."""
    from importlib import resources

    return str(resources.files("medgen_ray") / "resources" / "ray_data_logging.yaml")


def _clock(seconds: float) -> str:
    s = int(max(0.0, seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class JobProgress:
    """One progress display for a batch job: sources reached / total, kept, rejected, errored,
    elapsed, estimated time left."""

    def __init__(self, job: str, total: int | None, out: TextIO | None = None, interval_s: float = 30.0):
        self.job, self.total, self.out = job, total, out or sys.stderr
        self.interval_s = interval_s
        self.tty = bool(getattr(self.out, "isatty", lambda: False)())
        self.start = time.monotonic()
        self.last = float("-inf")  # the first update draws, however young the monotonic clock
        self.sources: set[str] = set()
        self.kept = self.rejected = self.errored = 0

    def update(self, kept: int = 0, rejected: int = 0, errored: int = 0, sources: list[str] | tuple = ()) -> None:
        self.kept += kept
        self.rejected += rejected
        self.errored += errored
        self.sources.update(s for s in sources if s)
        now = time.monotonic()
        if self.tty or now - self.last >= self.interval_s:
            self._draw(now)

    def line(self, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        elapsed = now - self.start
        done = len(self.sources) if self.total is None else min(len(self.sources), self.total)
        of = "" if self.total is None else f"/{self.total}"
        left = f", ~{_clock(elapsed / done * (self.total - done))} left" if self.total and 0 < done < self.total else ""
        return (f"{self.job}: {done}{of} sources · kept {self.kept} · rejected {self.rejected} · "
                f"errored {self.errored} · {_clock(elapsed)}{left}")

    def _state(self) -> tuple:
        return len(self.sources), self.kept, self.rejected, self.errored

    def _draw(self, now: float) -> None:
        self.last, self.drawn = now, self._state()
        if self.tty:
            self.out.write("\r\x1b[2K" + self.line(now))
        else:
            self.out.write(self.line(now) + "\n")
        self.out.flush()

    def finish(self) -> None:
        """The final state, on its own line (not again if the last line already showed it)."""
        if self.tty or getattr(self, "drawn", None) != self._state():
            self._draw(time.monotonic())
        if self.tty:
            self.out.write("\n")
            self.out.flush()
