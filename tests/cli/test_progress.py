"""Plain progress where stdout is no terminal, quiet Ray logs unless --verbose, tables that do not wrap: no Ray started."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pandas as pd
import pytest
from rich.console import Console
from typer.testing import CliRunner

from raysegment import runtime
from raysegment.cli import app
from raysegment.errors import ConfigError
from raysegment.progress import CountProgress, Ticker, eta_seconds, format_duration, format_rate, progress_line, progress_seconds


class FakeClock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def plain_console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=100_000), out


# --- the one formatter and ETA ---------------------------------------------------------------

@pytest.mark.parametrize("seconds, text", [(None, "?"), (float("nan"), "?"), (0, "0s"), (44.6, "45s"), (59.4, "59s"), (60, "1m00s"),
                                           (185, "3m05s"), (3599, "59m59s"), (3600, "1h00m"), (7440, "2h04m"), (-3, "0s")])
def test_durations(seconds, text):
    assert format_duration(seconds) == text


def test_rates_keep_about_three_digits():
    assert format_rate(4120, 10, "img") == "412 img/s"
    assert format_rate(125, 10, "img") == "12.5 img/s"
    assert format_rate(13, 10, "cases") == "1.30 cases/s"
    assert format_rate(5, 0, "cases") is None


def test_eta_is_the_pace_since_the_start_applied_to_what_is_left():
    assert eta_seconds(60, 20, 100) == 240  # 20 in a minute: 80 more take four
    assert eta_seconds(60, 30, 100, start=10) == 210  # 10 were done (or skipped) before the clock started
    assert eta_seconds(60, 100, 100) == 0
    assert eta_seconds(60, 0, 100) is None and eta_seconds(0, 5, 100) is None and eta_seconds(60, 5, None) is None
    assert eta_seconds(60, 10, 100, start=10) is None  # only free units so far: no pace yet


def test_progress_line_exact():
    assert progress_line("train", [("epoch", 2, 10), ("batch", 37, 120)], ["412 img/s", None], elapsed=65, eta=250) \
        == "train  epoch 2/10  batch 37/120  412 img/s  elapsed 1m05s  ETA 4m10s"
    assert progress_line("tune", [("trials", 3, None)], ["running 2"], elapsed=5, eta=None) == "tune  trials 3  running 2  elapsed 5s  ETA ?"
    assert progress_line("infer", [("cases", 120, 120)], elapsed=3720, finished=True) == "infer  cases 120/120  elapsed 1h02m  finished"


def test_progress_seconds_from_the_environment(monkeypatch):
    monkeypatch.delenv("RAYSEGMENT_PROGRESS_SECONDS", raising=False)
    assert progress_seconds() == 30
    monkeypatch.setenv("RAYSEGMENT_PROGRESS_SECONDS", "5")
    assert progress_seconds() == 5
    for bad in ("soon", "-1", "nan"):
        monkeypatch.setenv("RAYSEGMENT_PROGRESS_SECONDS", bad)
        with pytest.raises(ConfigError, match="RAYSEGMENT_PROGRESS_SECONDS"):
            progress_seconds()


# --- rate limiting -----------------------------------------------------------------------------

def test_ticker_writes_at_most_one_line_per_period_and_always_the_final_one():
    clock, lines, built = FakeClock(), [], []

    def line():
        built.append(clock.now)
        return f"t={clock.now - 1000:g}"

    ticker = Ticker(lines.append, every=30, clock=clock)
    for t in (1, 10, 29.9, 30, 31, 45, 59.9, 60, 61, 200):
        clock.now = 1000 + t
        ticker.tick(line)
    assert lines == ["t=30", "t=60", "t=200"]
    assert len(built) == 3  # lines are only built when written
    clock.now = 1201
    ticker.wrote()  # a per-epoch line told the same: the next tick waits a period again
    clock.now = 1230
    ticker.tick(line)
    ticker.final("end")
    assert lines == ["t=30", "t=60", "t=200", "end"]


def test_count_progress_lines_with_skips_and_failures():
    clock, lines = FakeClock(), []
    progress = CountProgress("infer", "cases", lines.append, every=30, clock=clock)
    for _ in range(10):  # done by an earlier run: no time, no pace
        progress.update(total=100, skipped=True)
    for k in range(1, 31):
        clock.now = 1000 + 2 * k  # then one case every 2 s
        progress.update(total=100, failed=k == 7)
    assert lines == ["infer  cases 25/100  0.50 cases/s  skipped 10  failed 1  elapsed 30s  ETA 2m30s",
                     "infer  cases 40/100  0.50 cases/s  skipped 10  failed 1  elapsed 1m00s  ETA 2m00s"]
    progress.finish()
    assert lines[-1] == "infer  cases 40/100  0.50 cases/s  skipped 10  failed 1  elapsed 1m00s  finished"


# --- tune: a plain line per period where there is no terminal, the live table where there is one ---

def fake_trial(number: int, status: str = "PENDING") -> SimpleNamespace:
    return SimpleNamespace(trial_id=f"abc_{number:05d}", status=status, config={"optim.lr": 0.001 * number})


def test_tune_reporter_prints_plain_lines_without_a_terminal():
    from raysegment.tune.reporter import LiveTrialTable

    console, out = plain_console()
    clock = FakeClock()
    reporter = LiveTrialTable(console, "val_dice", "max", ["optim.lr"], max_epochs=4, every=30, clock=clock)
    trials = [fake_trial(0, "TERMINATED"), fake_trial(1), fake_trial(2), fake_trial(3)]  # trial 0: an earlier session's
    reporter.setup(total_num_samples=4)
    for trial in trials[1:3]:
        reporter.on_trial_start(0, trials, trial)
    clock.now += 15
    reporter.on_trial_result(0, trials, trials[1], {"val_dice": 0.5, "epoch": 1})
    reporter.on_trial_result(0, trials, trials[2], {"val_dice": 0.7, "epoch": 1})
    clock.now += 45
    reporter.on_trial_result(0, trials, trials[1], {"val_dice": 0.8, "epoch": 4})
    reporter.on_trial_complete(0, trials, trials[1])
    clock.now += 10
    reporter.on_trial_complete(0, trials, trials[2])
    reporter.on_experiment_end(trials)
    assert reporter.live is None
    assert out.getvalue().splitlines() == [
        "tune  trials 1/4  running 2  trial-epochs 5  best val_dice 0.8000 (trial_00001)  elapsed 1m00s  ETA ?",
        "tune  trials 3/4  running 0  trial-epochs 5  best val_dice 0.8000 (trial_00001)  elapsed 1m10s  finished",
    ]
    assert "\x1b" not in out.getvalue()


def test_tune_reporter_eta_from_trials_finished_this_session():
    from raysegment.tune.reporter import LiveTrialTable

    console, out = plain_console()
    clock = FakeClock()
    reporter = LiveTrialTable(console, "val_loss", "min", [], max_epochs=2, every=0, clock=clock)
    trials = [fake_trial(k) for k in range(4)]
    reporter.setup(total_num_samples=4)
    reporter.on_trial_start(0, trials, trials[0])
    clock.now += 100
    reporter.on_trial_result(0, trials, trials[0], {"val_loss": 0.3, "epoch": 2})
    reporter.on_trial_complete(0, trials, trials[0])
    assert out.getvalue().splitlines()[-1] == "tune  trials 1/4  running 0  trial-epochs 2  best val_loss 0.3000 (trial_00000)  elapsed 1m40s  ETA 5m00s"


def test_tune_reporter_keeps_the_live_table_on_a_terminal():
    from raysegment.tune.reporter import LiveTrialTable

    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    reporter = LiveTrialTable(console, "val_dice", "max", [], max_epochs=1)
    trials = [fake_trial(0)]
    reporter.setup(total_num_samples=1)
    reporter.on_trial_start(0, trials, trials[0])
    assert reporter.live is not None and reporter.ticker is None
    reporter.on_experiment_end(trials)
    assert reporter.live is None


# --- infer: plain lines, no rich progress bar, where there is no terminal -------------------------

def fake_inference(settings, on_case=None, console=None):
    rows = [{"case_id": "a", "status": "skipped"}, {"case_id": "b", "status": "done"}, {"case_id": "c", "status": "failed"}]
    for row in rows:
        on_case(row, len(rows))
    return SimpleNamespace(cases=3, done=1, skipped=1, failed=1, slices=4, slices_per_second=2.0, exit_code=3,
                           errors=pd.DataFrame([{"case_id": "c", "stage": "decode", "error": "unreadable"}]))


def test_infer_without_a_terminal_prints_plain_progress_lines(monkeypatch, tmp_path):
    import rich.progress

    import raysegment.infer

    monkeypatch.setenv("RAYSEGMENT_PROGRESS_SECONDS", "0")
    monkeypatch.setattr(raysegment.infer, "run_inference", fake_inference)
    monkeypatch.setattr(rich.progress.Progress, "__init__", lambda *a, **k: pytest.fail("a live progress bar in a log"))
    out = "s3://archive/" + "deep/" * 50 + "out"  # a 270-character URI: one line, not wrapped, not cut short
    result = CliRunner().invoke(app, ["infer", "--model", "m", "--manifest", "cases.parquet", "--out", out])
    assert result.exit_code == 3, result.output
    lines = result.output.splitlines()
    assert lines[0] == "infer  cases 1/3  skipped 1  elapsed 0s  ETA ?"  # skipped cases set no pace
    assert re.fullmatch(r"infer  cases 2/3  \S+ cases/s  skipped 1  elapsed 0s  ETA 0s", lines[1])
    assert re.fullmatch(r"infer  cases 3/3  \S+ cases/s  skipped 1  failed 1  elapsed 0s  ETA 0s", lines[2])
    assert re.fullmatch(r"infer  cases 3/3  \S+ cases/s  skipped 1  failed 1  elapsed 0s  finished", lines[3])
    assert any(line.startswith("│ output") and out in line for line in lines)
    assert "raysegment infer: m" in lines[4]
    assert "\r" not in result.output and "\x1b" not in result.output


# --- --verbose: the log levels handed to Ray ----------------------------------------------------

@pytest.fixture
def restore_verbose():
    yield
    runtime.set_verbose(False)


def test_verbose_option_sets_the_levels_init_ray_passes(monkeypatch, restore_verbose):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_BACKEND_LOG_LEVEL", raising=False)
    runner = CliRunner()
    assert runner.invoke(app, ["--verbose", "inspect", "--help"]).exit_code == 0  # the app's options apply before the command's
    kwargs = runtime.ray_init_kwargs()
    assert kwargs["logging_level"] == "INFO" and kwargs["log_to_driver"] is True and runtime.backend_log_level() is None
    assert runner.invoke(app, ["inspect", "--help"]).exit_code == 0
    kwargs = runtime.ray_init_kwargs(num_cpus=2)
    assert kwargs["logging_level"] == "WARNING" and kwargs["log_to_driver"] is False and kwargs["configure_logging"] is True
    assert kwargs["address"] == "local" and kwargs["num_cpus"] == 2
    assert kwargs["_system_config"] == runtime.LOCAL_SYSTEM_CONFIG  # idle workers kept: no restart between tasks
    assert runtime.backend_log_level() == "fatal"  # hides the core worker's false alarm about actor arguments
    monkeypatch.setenv("RAY_BACKEND_LOG_LEVEL", "debug")
    assert runtime.backend_log_level() is None  # the user's own choice stands


def test_ray_data_console_handler_follows_verbose_and_its_log_file_keeps_everything():
    import logging

    import ray.data  # noqa: F401  (its import configures the logger)

    handlers = logging.getLogger("ray.data").handlers
    saved = [h.level for h in handlers]
    try:
        runtime.quiet_ray_data(False)
        streams = [h for h in handlers if isinstance(h, logging.StreamHandler)]
        assert streams and all(h.level == logging.WARNING for h in streams)
        assert any(not isinstance(h, logging.StreamHandler) and h.level <= logging.INFO for h in handlers)
        runtime.quiet_ray_data(True)
        assert all(h.level == logging.INFO for h in streams)
    finally:
        for handler, level in zip(handlers, saved):
            handler.setLevel(level)


# --- tables: one line per row through CliRunner and through a real pipe --------------------------

LONG = "s3://bucket/" + "runs/" * 44 + "best"  # 235 characters: wider than the old 200 columns


def fake_train_result():
    best = {f"{split}_{name}": 0.5 for split in ("train", "val") for name in ("loss", "dice", "iou", "precision", "recall")}
    summary = {"best": {**best, "val_patient_dice": 0.6, "val_empty_slices": 0.4}, "best_epoch": 2, "epochs_run": 3, "monitor": "val_patient_dice",
               "last_model_uri": LONG, "images_per_s": 12.3, "wall_time_s": 30.0}
    return SimpleNamespace(summary=summary, run_uri=LONG, best_model_uri=LONG)


def fake_eval_result():
    overview = pd.DataFrame([{"split": "test", "patients": 2, "patient_dice": 0.71, "patient_median": 0.7, "cases": 12, "empty_share": 0.4, "case_dice": 0.8}])
    summary = pd.DataFrame([{"split": "test", "class": "tumor", "metric": "dice", "mean": 0.8, "std": 0.1, "median": 0.81}])
    cases = pd.DataFrame([{"split": "test", "case_id": f"c{k}", "class": "tumor"} for k in range(12)])
    return SimpleNamespace(overview=overview, summary=summary, cases=cases, volumes=pd.DataFrame(), out=LONG, figures={"test_best": LONG},
                           reported_metrics=[])


def check_one_line_tables(output: str) -> None:
    lines = output.splitlines()
    titles = [line for line in lines if line.startswith(("best epoch 2 of 3", "evaluation of " + LONG))]
    assert titles, output  # a title longer than its table is not wrapped over several lines
    assert any(line.startswith("│ dice per patient") for line in lines) or any(line.startswith("│ test") for line in lines)
    assert all(not line.startswith("│") or line.rstrip().endswith("│") for line in lines)  # no row wrapped or cut
    assert "…" not in output


def test_train_and_evaluate_tables_through_clirunner(monkeypatch):
    import raysegment.evaluate
    import raysegment.train

    monkeypatch.setattr(raysegment.train, "train", lambda job, address=None, console=None: fake_train_result())
    def fake_evaluate(*args, on_case=None, **kwargs):
        for done in range(1, 13):
            on_case(done, 12)
        return fake_eval_result()

    monkeypatch.setattr(raysegment.evaluate, "evaluate", fake_evaluate)
    result = CliRunner().invoke(app, ["train", "--manifest", "m.parquet", "--out", "run"])
    assert result.exit_code == 0, result.output
    check_one_line_tables(result.output)
    assert f"run: {LONG}" in result.output.splitlines()
    result = CliRunner().invoke(app, ["evaluate", "--model", LONG, "--manifest", "m.parquet", "--split", "test", "--out", "ev"])
    assert result.exit_code == 0, result.output
    check_one_line_tables(result.output)
    assert result.output.splitlines()[0].startswith("evaluate  cases 12/12  ") and result.output.splitlines()[0].endswith("finished")


def test_demo_table_titles_through_clirunner(monkeypatch):
    import raysegment.demo

    fake = SimpleNamespace(data_root=LONG, manifest_uri=LONG, run=None,
                           summary={"splits": {"train": {"patients": 6, "cases": 36, "positives": 20}}})
    monkeypatch.setattr(raysegment.demo, "run_demo", lambda config, console=None: fake)
    result = CliRunner().invoke(app, ["demo", "--no-train"])
    assert result.exit_code == 0, result.output
    assert f"manifest: {LONG}" in [line.rstrip() for line in result.output.splitlines()]


def test_tables_through_a_real_pipe(tmp_path):
    """The console decides its width at import from sys.stdout: a real pipe, not CliRunner's stand-in."""
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        import raysegment.train, fakes
        raysegment.train.train = lambda job, address=None, console=None: fakes.fake_train_result()
        from raysegment.cli import app
        app(["train", "--manifest", "m.parquet", "--out", "run"])
    """)
    (tmp_path / "fakes.py").write_text(f"from types import SimpleNamespace\nLONG = {LONG!r}\n" + textwrap.dedent('''
        def fake_train_result():
            best = {f"{s}_{n}": 0.5 for s in ("train", "val") for n in ("loss", "dice", "iou", "precision", "recall")}
            summary = {"best": {**best, "val_patient_dice": 0.6, "val_empty_slices": 0.4}, "best_epoch": 2, "epochs_run": 3,
                       "monitor": "val_patient_dice", "last_model_uri": LONG, "images_per_s": 12.3, "wall_time_s": 30.0}
            return SimpleNamespace(summary=summary, run_uri=LONG, best_model_uri=LONG)
    '''))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    check_one_line_tables(done.stdout)
    assert f"best model: {LONG}" in done.stdout.splitlines()


def test_json_output_is_untouched(monkeypatch):
    import raysegment.train

    monkeypatch.setattr(raysegment.train, "train", lambda job, address=None, console=None: fake_train_result())
    result = CliRunner().invoke(app, ["train", "--manifest", "m.parquet", "--out", "run", "--json"])
    assert json.loads(result.output)["best_epoch"] == 2
