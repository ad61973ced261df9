"""Plain progress lines for logs: one line format and one ETA for train, tune, evaluate and infer.

Where stdout is a terminal the commands draw rich displays (a progress bar, a live table). Where it
is not (``ray job submit``, a Kubernetes CronJob, a pipe) a redrawn display turns into thousands of
lines or into nothing until the end, so there a :class:`Ticker` prints one line at most every
``RAYSEGMENT_PROGRESS_SECONDS`` (default 30) and a final one, all made by :func:`progress_line`::

    train  epoch 2/10  batch 37/120  412 img/s  elapsed 1m05s  ETA 4m10s
    infer  cases 40/120  1.30 cases/s  elapsed 31s  ETA 1m02s
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable

from raysegment.errors import ConfigError

SECONDS_ENV = "RAYSEGMENT_PROGRESS_SECONDS"
DEFAULT_SECONDS = 30.0


def progress_seconds() -> float:
    """Seconds between two progress lines: ``RAYSEGMENT_PROGRESS_SECONDS``, default 30; 0 prints every update."""
    raw = os.environ.get(SECONDS_ENV, "").strip()
    if not raw:
        return DEFAULT_SECONDS
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:  # also rejects nan
        raise ConfigError(f"{SECONDS_ENV}={raw!r}: expected a number of seconds >= 0, e.g. 30")
    return seconds


def format_duration(seconds: float | None) -> str:
    """``45s``, ``3m05s``, ``2h04m``; ``?`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def format_rate(count: float, seconds: float, unit: str) -> str | None:
    """``412 img/s``, ``12.5 img/s``, ``1.30 cases/s``: three significant digits or so; None before any time passed."""
    if seconds <= 0:
        return None
    rate = count / seconds
    digits = 0 if rate >= 100 else 1 if rate >= 10 else 2
    return f"{rate:.{digits}f} {unit}/s"


def eta_seconds(elapsed: float, done: float, total: float | None, start: float = 0.0) -> float | None:
    """Seconds left if the pace since ``start`` holds: ``elapsed * (total - done) / (done - start)``.

    Args:
        elapsed: seconds since ``done`` was ``start``.
        start: units already done (or done at no cost: skipped cases) when the clock started.

    Returns:
        None while it cannot be estimated (no total, nothing done yet).
    """
    if total is None or done <= start or elapsed <= 0:
        return None
    return max(0.0, elapsed * (total - done) / (done - start))


def progress_line(task: str, counts: Iterable[tuple[str, float, float | None]], extras: Iterable[str | None] = (),
                  elapsed: float = 0.0, eta: float | None = None, finished: bool = False) -> str:
    """The one progress line of every command.

    Args:
        task: the command, first on the line (``train``).
        counts: ``(name, done, total)`` each, shown ``name done/total`` (``name done`` without a total).
        extras: further fields (a rate, a best score); None entries are left out.
        finished: the final line: ``finished`` in place of the ETA.
    """
    parts = [task]
    parts += [f"{name} {done}/{total}" if total is not None else f"{name} {done}" for name, done, total in counts]
    parts += [extra for extra in extras if extra]
    parts.append(f"elapsed {format_duration(elapsed)}")
    parts.append("finished" if finished else f"ETA {format_duration(eta)}")
    return "  ".join(parts)


class Ticker:
    """Rate limit for progress lines: at most one every ``every`` seconds, the first ``every`` seconds
    after the start (a short job prints its final line only); :meth:`final` always writes.

    Args:
        write: prints one line.
        every: seconds between lines; default :func:`progress_seconds`.
        clock: monotonic seconds (tests pass a fake one).
    """

    def __init__(self, write: Callable[[str], None], every: float | None = None, clock: Callable[[], float] = time.monotonic):
        self.write = write
        self.every = progress_seconds() if every is None else every
        self.clock = clock
        self.started = self.last = clock()

    def elapsed(self) -> float:
        return self.clock() - self.started

    def tick(self, line: Callable[[], str]) -> bool:
        """Write ``line()`` if the last line is ``every`` seconds old; the line is only built then."""
        now = self.clock()
        if now - self.last < self.every:
            return False
        self.last = now
        self.write(line())
        return True

    def wrote(self) -> None:
        """Another line just told the same (a per-epoch line): the next tick waits ``every`` seconds from now."""
        self.last = self.clock()

    def final(self, line: str) -> None:
        self.write(line)


class CountProgress:
    """Progress over units that finish one by one (cases of ``evaluate`` and ``infer``).

    Skipped units (done by an earlier run) count as done but not in the rate, so the ETA is the
    pace of the units really worked on.
    """

    def __init__(self, task: str, unit: str, write: Callable[[str], None], every: float | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.task, self.unit = task, unit
        self.ticker = Ticker(write, every, clock)
        self.done = self.skipped = self.failed = 0
        self.total: int | None = None

    def update(self, total: int | None = None, done: int | None = None, skipped: bool = False, failed: bool = False) -> None:
        """One more unit finished (or ``done`` of them in all), out of ``total``."""
        self.done = self.done + 1 if done is None else done
        self.skipped += skipped
        self.failed += failed
        self.total = total if total is not None else self.total
        self.ticker.tick(self.line)

    def line(self, finished: bool = False) -> str:
        elapsed = self.ticker.elapsed()
        worked = self.done - self.skipped
        extras = [format_rate(worked, elapsed, self.unit) if worked else None,
                  f"skipped {self.skipped}" if self.skipped else None, f"failed {self.failed}" if self.failed else None]
        return progress_line(self.task, [(self.unit, self.done, self.total)], extras, elapsed,
                             eta_seconds(elapsed, self.done, self.total, start=self.skipped), finished)

    def finish(self) -> None:
        self.ticker.final(self.line(finished=True))
