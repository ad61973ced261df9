"""A live rich table of the trials, in place of Tune's own console reporter.

:class:`LiveTrialTable` is a Tune ``Callback`` (it runs in the driver process): it keeps one row
per trial (status, searched values, epoch, last and best metric) and redraws the table whenever
a trial reports, starts or ends.
"""

from __future__ import annotations

from typing import Any

from ray.tune import Callback
from rich.live import Live
from rich.table import Table

from raysegment.tune.trial import trial_name


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
    """

    def __init__(self, console, metric: str, mode: str, keys: list[str], max_epochs: int):
        self.console = console
        self.max_epochs = max_epochs
        self.metric = metric
        self.mode = mode
        self.keys = keys
        self.rows: dict[str, dict[str, Any]] = {}
        self.live: Live | None = None

    def __getstate__(self):  # Tune pickles the run config; the console and Live stay here
        return {**self.__dict__, "console": None, "live": None}

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

    def _refresh(self) -> None:
        if self.console is None:
            return
        if self.live is None:
            self.live = Live(self.render(), console=self.console, auto_refresh=False)
            self.live.start()
        self.live.update(self.render(), refresh=True)

    def on_trial_start(self, iteration, trials, trial, **info):
        self._row(trial)["status"] = "RUNNING"
        self._refresh()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        row = self._row(trial)
        row["status"] = "RUNNING"
        if self.metric in result:
            value = float(result[self.metric])
            row["last"] = value
            best = row.get("best")
            row["best"] = value if best is None else (max if self.mode == "max" else min)(best, value)
        row["epoch"] = result.get("epoch", result.get("training_iteration"))
        self._refresh()

    def on_trial_complete(self, iteration, trials, trial, **info):
        row = self._row(trial)
        row["status"] = "DONE" if (row.get("epoch") or 0) >= self.max_epochs else "STOPPED"
        self._refresh()

    def on_trial_error(self, iteration, trials, trial, **info):
        self._row(trial)["status"] = "ERROR"
        self._refresh()

    def on_experiment_end(self, trials, **info):
        if self.live is not None:
            self.live.stop()
            self.live = None
