"""Training progress where stdout is no terminal: in-epoch lines from rank 0, epoch lines with the run's ETA, a final line."""

from __future__ import annotations

import io
import queue
import re
from types import SimpleNamespace

import pytest
from fixtures_data import cli_train_run  # noqa: F401  (fixture)
from rich.console import Console
from typer.testing import CliRunner

from raysegment.train import progress as train_progress
from raysegment.train.progress import _DONE, BATCH, BatchReporter, LiveMetrics, PlainTrainProgress, console_sink


class FakeClock:
    def __init__(self, now: float = 500.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def epoch_metrics(epoch: int, seconds: float) -> dict:
    return {"epoch": epoch, "train_loss": 0.5, "val_dice": 0.25, "images_per_s": 40.0, "epoch_time_s": seconds}


def test_plain_progress_lines_with_the_run_eta():
    out, clock = io.StringIO(), FakeClock()
    sink = PlainTrainProgress(Console(file=out, width=100_000), epochs=4, every=30, clock=clock)
    for second, batch in ((1, 1), (20, 40), (31, 60), (50, 100)):  # 100 batches per epoch, one every 0.3 s or so
        clock.now = 500 + second
        sink.batch({BATCH: True, "epoch": 1, "batch": batch, "batches": 100, "images": 4 * (batch - 1), "seconds": second - 1})
    clock.now = 561
    sink(epoch_metrics(1, 60.0))
    clock.now = 585  # 24 s after the epoch line: no in-epoch line yet
    sink.batch({BATCH: True, "epoch": 2, "batch": 50, "batches": 100, "images": 196, "seconds": 23})
    clock.now = 601
    sink.batch({BATCH: True, "epoch": 2, "batch": 51, "batches": 100, "images": 200, "seconds": 39})
    sink.close()
    # The pace counts from the first batch seen (0.01 epochs at 501 s): 0.59 epochs in 30 s leave 3.4 for 173 s;
    # 0.99 in 60 s leave 3 for 182 s; 1.5 in 100 s leave 2.49 for 166 s.
    assert out.getvalue().splitlines() == [
        "train  epoch 1/4  batch 60/100  7.87 img/s  elapsed 31s  ETA 2m53s",
        "epoch   1/4  train_loss 0.5000  val_dice 0.2500  40.0 img/s  ETA 3m02s",
        "train  epoch 2/4  batch 51/100  5.13 img/s  elapsed 1m41s  ETA 2m46s",
        "train  epochs 1/4  elapsed 1m41s  finished",
    ]


def test_first_epoch_line_without_earlier_progress_takes_the_epoch_time():
    out = io.StringIO()
    sink = PlainTrainProgress(Console(file=out, width=100_000), epochs=3, every=30, clock=FakeClock())
    sink(epoch_metrics(1, 42.0))
    assert out.getvalue().rstrip().endswith("40.0 img/s  ETA 1m24s")


def test_console_sink_is_plain_without_a_terminal_and_the_epoch_line_on_one():
    plain = console_sink(Console(file=io.StringIO()), 3)
    assert isinstance(plain, PlainTrainProgress) and hasattr(plain, "batch")
    out = io.StringIO()
    rich_sink = console_sink(Console(file=out, force_terminal=True, width=200), 3)
    assert not hasattr(rich_sink, "batch")
    rich_sink(epoch_metrics(1, 5.0))
    assert "epoch   1/3" in out.getvalue() and "ETA" not in out.getvalue()


def test_live_metrics_routes_in_epoch_progress_only_to_sinks_that_take_it():
    epochs, batches = [], []

    class Plain:
        def __call__(self, metrics):
            epochs.append(("plain", metrics["epoch"]))

        def batch(self, item):
            batches.append(item["batch"])

    live = LiveMetrics([Plain(), lambda metrics: epochs.append(("mlflow", metrics["epoch"]))])
    live.queue = queue.Queue()  # stands in for the Ray queue the context manager starts
    for item in ({BATCH: True, "epoch": 1, "batch": 3}, {"epoch": 1}, _DONE):
        live.queue.put(item)
    live._print()
    assert batches == [3] and epochs == [("plain", 1), ("mlflow", 1)]


def test_batch_reporter_sends_from_rank_zero_only_without_waiting(monkeypatch):
    import ray
    import ray.train

    sent = []
    actor = SimpleNamespace(put_nowait=SimpleNamespace(remote=sent.append))
    monkeypatch.setattr(train_progress, "queue_name", lambda: "raysegment-progress-01000000")
    monkeypatch.setattr(ray, "get_actor", lambda name: actor)
    clock = FakeClock()
    for rank in (1, 0):
        context = SimpleNamespace(get_world_size=lambda: 2, get_world_rank=lambda rank=rank: rank)
        monkeypatch.setattr(ray.train, "get_context", lambda context=context: context)
        reporter = BatchReporter(batches=None, every=5, clock=clock)
        for epoch, batches in ((1, 12), (2, 12)):
            for _ in range(batches):
                clock.now += 1
                reporter.step(epoch, 4)
    # Rank 1 sent nothing; rank 0 sent each epoch's first batch and then one every 5 s; the second
    # epoch knows its length from the first; the pace is global (x2 workers), after the first batch.
    assert [(m["epoch"], m["batch"], m["batches"], m["images"], m["seconds"]) for m in sent] == [
        (1, 1, None, 0, 0), (1, 6, None, 40, 5), (1, 11, None, 80, 10),
        (2, 1, 12, 0, 0), (2, 6, 12, 40, 5), (2, 11, 12, 80, 10)]


def test_batch_reporter_without_a_named_queue_sends_nothing(monkeypatch):
    import ray
    import ray.train

    def missing(name):
        raise ValueError(f"Failed to look up actor with name '{name}'")

    monkeypatch.setattr(train_progress, "queue_name", lambda: "raysegment-progress-01000000")
    monkeypatch.setattr(ray, "get_actor", missing)
    monkeypatch.setattr(ray.train, "get_context", lambda: SimpleNamespace(get_world_size=lambda: 1, get_world_rank=lambda: 0))
    reporter = BatchReporter(batches=10)
    assert reporter.actor is None
    reporter.step(1, 4)  # a no-op


@pytest.mark.slow
def test_train_and_evaluate_commands_print_progress_quietly(cli_train_run, lgg_manifest, tmp_path, monkeypatch, capfd):
    """End to end through CliRunner (no terminal): in-epoch lines from the workers, epoch lines with ETA, final lines;
    no INFO lines, and no core-worker line about actor arguments from evaluate's Ray Data actor pool.

    The training command is ``cli_train_run`` (2 epochs of 3 batches on 2 workers, a line on every update),
    which the CLI tests read too."""
    from raysegment.cli import app

    monkeypatch.setenv("RAYSEGMENT_PROGRESS_SECONDS", "0")  # every update, for a run of seconds
    run, result = str(cli_train_run.run), cli_train_run.result
    assert result.exit_code == 0, (result.output, str(result.exception))
    lines = result.output.splitlines()
    eta = r"ETA [0-9hms]+"
    assert any(re.fullmatch(r"train  epoch 1/2  batch 1/\d+  elapsed \S+  ETA \?", line) for line in lines), result.output
    assert any(re.fullmatch(rf"train  epoch 2/2  batch \d+/\d+  .*  {eta}", line) for line in lines), result.output
    assert any(line.startswith("epoch   1/2  ") and re.search(rf"  {eta}$", line) for line in lines), result.output
    assert any(line.startswith("epoch   2/2  ") and line.endswith("  ETA 0s") for line in lines), result.output
    assert any(re.fullmatch(r"train  epochs 2/2  elapsed \S+  finished", line) for line in lines), result.output
    assert "best model:" in result.output and not [line for line in lines if " INFO " in line], result.output

    result = CliRunner().invoke(app, ["evaluate", "--model", run, "--manifest", lgg_manifest, "--out", str(tmp_path / "ev"),
                                      "--split", "val", "--max-cases", "4"])
    assert result.exit_code == 0, (result.output, str(result.exception))
    lines = result.output.splitlines()
    # A line per scored case (every update, here), then the final one, before the tables.
    assert re.fullmatch(r"evaluate  cases 1/4  \S+ cases/s  elapsed \S+  ETA \S+", lines[0]), result.output
    assert re.fullmatch(r"evaluate  cases 4/4  \S+ cases/s  elapsed \S+  finished", lines[4]), result.output
    assert not [line for line in result.output.splitlines() if " INFO " in line], result.output
    assert "constructor arguments in the object store" not in capfd.readouterr().err
