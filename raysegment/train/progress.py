"""Driver-side handling of the run's reported results, live: console lines and MLflow metrics.

A Ray Train ``UserCallback`` runs on the controller, not the driver, so it forwards each epoch's
metrics through a ``ray.util.queue.Queue``; a driver thread hands them to the sinks (print a rich
line, log to MLflow) while ``trainer.fit()`` blocks the main thread. Logging MLflow from the driver
means only the driver needs the tracking server's settings and credentials.
"""

from __future__ import annotations

import queue as _queue
import threading
from collections.abc import Callable

from ray.exceptions import RayError
from ray.train import UserCallback

_DONE = "__done__"


class ForwardMetrics(UserCallback):
    """Controller-side callback: puts rank 0's metrics of every report on the queue."""

    def __init__(self, queue):
        self.queue = queue

    def after_report(self, run_context, metrics, checkpoint):
        if metrics:
            self.queue.put(dict(metrics[0]))


def format_line(metrics: dict, epochs: int) -> str:
    line = f"epoch {metrics['epoch']:>3}/{epochs}"
    for key in ("train_loss", "train_dice", "val_loss", "val_dice", "val_patient_dice", "val_empty_slices"):
        if key in metrics:
            line += f"  {key} [bold]{metrics[key]:.4f}[/]"
    return line + f"  {metrics.get('images_per_s', 0):.1f} img/s"


def console_sink(console, epochs: int) -> Callable[[dict], None]:
    """Print one line per epoch (``epochs``: the total, for the ``epoch k/n`` column)."""
    return lambda metrics: console.print(format_line(metrics, epochs), highlight=False, soft_wrap=True)


class LiveMetrics:
    """Context manager: a queue, its callback, and a thread passing what arrives to ``sinks``.

    Args:
        sinks: functions called with each epoch's metrics dict, in order; none: nothing runs.
    """

    def __init__(self, sinks: list[Callable[[dict], None]]):
        self.sinks = sinks
        self.queue = None
        self.thread = None

    @property
    def callbacks(self) -> list:
        return [ForwardMetrics(self.queue)] if self.queue is not None else []

    def __enter__(self) -> LiveMetrics:
        if not self.sinks:
            return self
        from ray.util.queue import Queue

        self.queue = Queue(actor_options={"num_cpus": 0})
        self.thread = threading.Thread(target=self._print, daemon=True)
        self.thread.start()
        return self

    def _print(self) -> None:
        while True:
            try:
                item = self.queue.get(timeout=1.0)
            except _queue.Empty:  # ray.util.queue.Empty subclasses it
                continue
            except RayError:  # the queue actor is gone: the run is over
                return
            if item == _DONE:
                return
            for sink in self.sinks:
                sink(item)

    def __exit__(self, *exc) -> None:
        if self.queue is None:
            return
        self.queue.put(_DONE)
        self.thread.join(timeout=60)
        self.queue.shutdown()
