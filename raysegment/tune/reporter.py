"""A live rich table of the trials, in place of Tune's own console reporter.

:class:`LiveTrialTable` is a Tune ``Callback`` (it runs in the driver process): it keeps one row
per trial (status, searched values, epoch, last and best metric) and redraws the table whenever
a trial reports, starts or ends. Where stdout is no terminal (``ray job submit``, a CronJob's log)
a redrawn table would flood the log, so it prints one plain line instead, at most every
``RAYSEGMENT_PROGRESS_SECONDS``, and a final one::

    tune  trials 3/20  running 2  trial-epochs 41  best val_patient_dice 0.8123 (trial_00002)  elapsed 5m00s  ETA 20m00s
"""

from __future__ import annotations

import time
from typing import Any

from ray.tune import Callback
from rich.live import Live
from rich.table import Table

from raysegment.progress import Ticker, eta_seconds, progress_line
from raysegment.tune.trial import trial_name

#: Statuses of a trial that will not run again (ours, then Tune's for trials of an earlier session).
_FINISHED = {"DONE", "STOPPED", "ERROR", "TERMINATED"}


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    text = str(value)
    return text if len(text) <= 28 else text[:25] + "..."


class LiveTrialTable(Callback):
    """Args:
        console: a rich Console to draw on.
        metric, mode: the ranked metric.
        keys: the searched config keys (columns).
        max_epochs: epochs of a full trial; a trial that ends before is shown as stopped (ASHA).
        every, clock: for the plain lines (:class:`raysegment.progress.Ticker`).
    """

    def __init__(self, console, metric: str, mode: str, keys: list[str], max_epochs: int, every: float | None = None,
                 clock=time.monotonic):
        self.console = console
        self.max_epochs = max_epochs
        self.metric = metric
        self.mode = mode
        self.keys = keys
        self.rows: dict[str, dict[str, Any]] = {}
        self.live: Live | None = None
        self.every, self.clock = every, clock
        self.ticker: Ticker | None = None
        self.trials: list = []  # Tune's list of every trial, restored ones too
        self.total: int | None = None
        self.finished_before: int | None = None  # trials finished when this session started (a resumed search)

    def __getstate__(self):  # Tune pickles the run config; the console, Live and ticker stay here
        return {**self.__dict__, "console": None, "live": None, "ticker": None, "trials": []}

    def setup(self, stop=None, num_samples=None, total_num_samples=None, **info):
        self.total = total_num_samples if total_num_samples and total_num_samples > 0 else None
        self.ticker = None
        if self.console is not None and not self.console.is_terminal:
            self._plain()  # the clock starts with the search

    def _plain(self) -> Ticker:
        if self.ticker is None:
            self.ticker = Ticker(lambda line: self.console.print(line, markup=False, highlight=False, soft_wrap=True), self.every, self.clock)
        return self.ticker

    def plain_line(self, finished: bool = False) -> str:
        """``tune  trials done/total  running n  trial-epochs n  best ...  elapsed ...  ETA ...`` (ETA from the trials finished so far)."""
        statuses = self._statuses()
        done = sum(status in _FINISHED for status in statuses)
        scored = [(row["best"], name) for name, row in self.rows.items() if row.get("best") is not None]
        best = (max if self.mode == "max" else min)(scored) if scored else None
        extras = [f"running {statuses.count('RUNNING')}", f"trial-epochs {sum(int(r.get('epoch') or 0) for r in self.rows.values())}",
                  f"best {self.metric} {best[0]:.4f} ({best[1]})" if best else None]
        elapsed = self._plain().elapsed()
        return progress_line("tune", [("trials", done, self.total)], extras, elapsed,
                             eta_seconds(elapsed, done, self.total, start=self.finished_before or 0), finished)

    def _statuses(self) -> list[str]:
        return [self.rows.get(trial_name(t), {}).get("status") or t.status for t in self.trials] or [r["status"] for r in self.rows.values()]

    def _row(self, trial) -> dict[str, Any]:
        return self.rows.setdefault(trial_name(trial), {"status": "PENDING", "params": dict(trial.config)})

    def render(self) -> Table:
        table = Table(title="trials", title_justify="left")
        table.add_column("trial", no_wrap=True)
        for column in ("status", *self.keys, "epoch", self.metric, f"best {self.metric}"):
            table.add_column(column)
        for name in sorted(self.rows):
            row = self.rows[name]
            table.add_row(name, row["status"], *(_short(row["params"].get(k, "")) for k in self.keys),
                          str(row.get("epoch", "")), _short(row.get("last", "")), _short(row.get("best", "")))
        return table

    def _refresh(self, trials=None) -> None:
        if trials is not None:
            self.trials = trials
        if self.console is None:
            return
        if not self.console.is_terminal:
            if self.finished_before is None:
                self.finished_before = sum(status in _FINISHED for status in self._statuses())
            self._plain().tick(self.plain_line)
            return
        if self.live is None:
            self.live = Live(self.render(), console=self.console, auto_refresh=False)
            self.live.start()
        self.live.update(self.render(), refresh=True)

    def on_trial_start(self, iteration, trials, trial, **info):
        self._row(trial)["status"] = "RUNNING"
        self._refresh(trials)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        row = self._row(trial)
        row["status"] = "RUNNING"
        if self.metric in result:
            value = float(result[self.metric])
            row["last"] = value
            best = row.get("best")
            row["best"] = value if best is None else (max if self.mode == "max" else min)(best, value)
        row["epoch"] = result.get("epoch", result.get("training_iteration"))
        self._refresh(trials)

    def on_trial_complete(self, iteration, trials, trial, **info):
        row = self._row(trial)
        row["status"] = "DONE" if (row.get("epoch") or 0) >= self.max_epochs else "STOPPED"
        self._refresh(trials)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._row(trial)["status"] = "ERROR"
        self._refresh(trials)

    def on_experiment_end(self, trials, **info):
        if self.console is not None and not self.console.is_terminal:
            self.trials = trials
            self._plain().final(self.plain_line(finished=True))
        if self.live is not None:
            self.live.stop()
            self.live = None
