"""Driver-side handling of the run's reported results, live: console lines and MLflow metrics.

A Ray Train ``UserCallback`` runs on the controller, not the driver, so it forwards each epoch's
metrics through a ``ray.util.queue.Queue``; a driver thread hands them to the sinks (print a rich
line, log to MLflow) while ``trainer.fit()`` blocks the main thread. Logging MLflow from the driver
means only the driver needs the tracking server's settings and credentials.

Where stdout is no terminal (``ray job submit``, a CronJob's log), the console sink is a
:class:`PlainTrainProgress`: it also prints progress inside an epoch, which rank 0 of the workers
puts on the same queue (:class:`BatchReporter`), found by name as Ray Train hands workers nothing
of the driver's but ``train_loop_config``.
"""

from __future__ import annotations

import queue as _queue
import threading
import time
from collections.abc import Callable

from ray.exceptions import RayError
from ray.train import UserCallback

from raysegment.progress import Ticker, eta_seconds, format_duration, format_rate, progress_line, progress_seconds

_DONE = "__done__"
BATCH = "__batch__"  # marks a worker's in-epoch progress message among the epochs' metrics

#: Workers send in-epoch progress as often as it is printed, but at least this often, so that a printed line is never
#: more than this stale; each is one small fire-and-forget actor call.
_SEND_SECONDS = 5.0


def queue_name() -> str:
    """Name of the progress queue of this job's run; every actor of the job (trainer workers too) shares the job id."""
    import ray

    return f"raysegment-progress-{ray.get_runtime_context().get_job_id()}"


class ForwardMetrics(UserCallback):
    """Controller-side callback: puts rank 0's metrics of every report on the queue."""

    def __init__(self, queue):
        self.queue = queue

    def after_report(self, run_context, metrics, checkpoint):
        if metrics:
            self.queue.put(dict(metrics[0]))


class BatchReporter:
    """Worker side of in-epoch progress: rank 0 sends epoch, batch, batches per epoch and pace to the
    driver's named progress queue, at most every few seconds and without waiting; no queue, no sending.

    Args:
        batches: batches per epoch when known in advance (a cached dataset); else the last epoch's count.
    """

    def __init__(self, batches: int | None, every: float | None = None, clock: Callable[[], float] = time.monotonic):
        import ray
        import ray.train

        context = ray.train.get_context()
        self.world = context.get_world_size()
        self.actor = None
        if context.get_world_rank() == 0:
            try:
                self.actor = ray.get_actor(queue_name())
            except ValueError:  # the driver shows no plain progress (a terminal, --json, a Tune trial)
                pass
        self.batches = batches
        if every is None:
            every = min(progress_seconds(), _SEND_SECONDS) if self.actor is not None else 0.0
        self.every = every
        self.clock = clock
        self.epoch = self.batch = self.images = 0
        self.started = self.last = 0.0

    def step(self, epoch: int, images: int) -> None:
        """After each training batch of ``images`` examples (on this worker)."""
        if self.actor is None:
            return
        now = self.clock()
        if epoch != self.epoch:
            if self.epoch and self.batch:
                self.batches = self.batch  # the workers' split may differ from the planned steps by a batch
            self.epoch, self.batch, self.images, self.started = epoch, 0, 0, now
            self.last = now
        self.batch += 1
        if self.batch > 1:  # the pace from the end of the first batch: that one waits on the data pipeline's start
            self.images += images
        if self.batch == 1 or now - self.last >= self.every:  # and once as each epoch starts, however short
            self.last = now
            self.actor.put_nowait.remote({BATCH: True, "epoch": epoch, "batch": self.batch, "batches": self.batches,
                                          "images": self.images * self.world, "seconds": now - self.started})


def format_line(metrics: dict, epochs: int) -> str:
    line = f"epoch {metrics['epoch']:>3}/{epochs}"
    for key in ("train_loss", "train_dice", "val_loss", "val_dice", "val_patient_dice", "val_empty_slices"):
        if key in metrics:
            line += f"  {key} [bold]{metrics[key]:.4f}[/]"
    return line + f"  {metrics.get('images_per_s', 0):.1f} img/s"


class PlainTrainProgress:
    """Console sink where stdout is no terminal: each epoch's line with the run's ETA and, inside an
    epoch, a ``train  epoch e/n  batch b/m ...`` line at most every ``RAYSEGMENT_PROGRESS_SECONDS``.

    The ETA is the pace since the first progress seen (a resumed run starts mid-way), or before
    that the last epoch's duration times the epochs left.
    """

    def __init__(self, console, epochs: int, every: float | None = None, clock: Callable[[], float] = time.monotonic):
        self.console = console
        self.ticker = Ticker(lambda line: console.print(line, markup=False, highlight=False, soft_wrap=True), every, clock)
        self.epochs = epochs
        self.mark: tuple[float, float] | None = None  # (time, epochs done) of the first progress seen
        self.epochs_done = 0

    def _eta(self, done: float) -> float | None:
        now = self.ticker.clock()
        if self.mark is None:
            self.mark = (now, done)
        return eta_seconds(now - self.mark[0], done, self.epochs, start=self.mark[1])

    def __call__(self, metrics: dict) -> None:
        epoch = int(metrics["epoch"])
        self.epochs_done = epoch
        eta = self._eta(float(epoch))
        if eta is None and "epoch_time_s" in metrics:
            eta = eta_seconds(float(metrics["epoch_time_s"]), epoch, self.epochs, start=epoch - 1)
        self.ticker.wrote()
        self.console.print(f"{format_line(metrics, self.epochs)}  ETA {format_duration(eta)}", highlight=False, soft_wrap=True)

    def batch(self, item: dict) -> None:
        batches = item.get("batches")
        eta = self._eta(item["epoch"] - 1 + min(item["batch"] / batches, 1.0)) if batches else None
        self.ticker.tick(lambda: progress_line(
            "train", [("epoch", item["epoch"], self.epochs), ("batch", item["batch"], batches)],
            [format_rate(item["images"], item["seconds"], "img")], self.ticker.elapsed(), eta))

    def close(self) -> None:
        self.ticker.final(progress_line("train", [("epochs", self.epochs_done, self.epochs)], elapsed=self.ticker.elapsed(), finished=True))


def console_sink(console, epochs: int) -> Callable[[dict], None]:
    """Print one line per epoch (``epochs``: the total, for the ``epoch k/n`` column); plain progress with ETAs without a terminal."""
    if not console.is_terminal:
        return PlainTrainProgress(console, epochs)
    return lambda metrics: console.print(format_line(metrics, epochs), highlight=False, soft_wrap=True)


class LiveMetrics:
    """Context manager: a queue, its callback, and a thread passing what arrives to ``sinks``.

    Args:
        sinks: functions called with each epoch's metrics dict, in order; none: nothing runs. A sink
            with a ``batch`` method also gets the workers' in-epoch progress (the queue is then
            named, for the workers to find), one with ``close`` is closed after a run that ended well.
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

        options = {"num_cpus": 0}
        if any(hasattr(sink, "batch") for sink in self.sinks):
            options["name"] = queue_name()
        try:
            self.queue = Queue(actor_options=options)
        except ValueError:  # the name is still held by a run of this job: epoch lines only
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
                if not item.get(BATCH):
                    sink(item)
                elif hasattr(sink, "batch"):
                    sink.batch(item)

    def __exit__(self, exc_type, *exc) -> None:
        if self.queue is None:
            return
        self.queue.put(_DONE)
        self.thread.join(timeout=60)
        self.queue.shutdown()
        if exc_type is None:
            for sink in self.sinks:
                if hasattr(sink, "close"):
                    sink.close()
