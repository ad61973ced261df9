"""A real 4-trial ASHA search of tiny U-Nets on CPU, interrupted after its first finished trial and
resumed through the CLI; then its tables, best model, best config and figures."""

from __future__ import annotations

import io
import os
import signal

import pandas as pd
import pytest
import torch
import yaml
from ray.tune import Callback
from typer.testing import CliRunner

from raysegment.cli import app
from raysegment.models import load_model
from raysegment.train.config import load_config
from raysegment.tune import load_tune_config, run_tune
from raysegment.tune.results import checkpoint_uri
from raysegment.tune.run import _search_alg, search_space
from raysegment.tune.trial import trial_name
from tests.tune.conftest import TINY_TRAIN

pytestmark = pytest.mark.slow

SPACE = {
    "optim.lr": {"loguniform": [1.0e-3, 3.0e-2]},
    "optim.loss": {"choice": ["dice", "bce_dice"]},
    "optim.batch_size": None,
    "optim.weight_decay": None,
    "model.config.base_channels": None,
}


class InterruptAfter(Callback):
    """Sends the driver SIGUSR1 (Tune's Ctrl+C) once ``n`` trials are terminated: a real interruption.

    Tune then saves its state and waits for the running trial's training run to end; one trial at
    a time leaves the later trials unstarted for the resumed search.
    """

    def __init__(self, n: int):
        self.n, self.terminated = n, []

    def on_step_end(self, iteration, trials, **info):
        done = [trial_name(t) for t in trials if t.status == "TERMINATED"]
        if not self.terminated and len(done) >= self.n:
            self.terminated = done  # Tune saves these as finished when it stops
            os.kill(os.getpid(), signal.SIGUSR1)


@pytest.fixture(scope="module")
def experiment(ray_session, tiny_lgg, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("tune_exp")
    job = root / "tune.yaml"
    job.write_text(yaml.safe_dump({
        "out": str(root / "exp"), "model": "unet", "manifest": tiny_lgg["manifest"], "samples": 4, "max_epochs": 2,
        "max_concurrent": 1, "scheduler": "asha", "space": SPACE, "train": TINY_TRAIN,
    }))
    interrupt = InterruptAfter(1)
    first = run_tune(load_tune_config(str(job)), callbacks=[interrupt])
    finished = interrupt.terminated
    stamps = {name: os.stat(root / "exp" / "trials" / name / "summary.json").st_mtime_ns for name in finished}
    # Trials whose training ended but whose end Tune had not processed are restarted on resume;
    # Ray Train then finds them finished, so their epochs must not change.
    trained = {name: pd.read_parquet(root / "exp" / "trials" / name / "history.parquet")
               for name in first.trials.loc[first.trials["status"] == "completed", "trial"]}
    cli = CliRunner().invoke(app, ["tune", "--job", str(job)])
    exp = root / "exp"
    return {"job": str(job), "exp": exp, "first": first, "finished": finished, "stamps": stamps, "trained": trained, "cli": cli,
            "trials": pd.read_parquet(exp / "trials.parquet"), "history": pd.read_parquet(exp / "history.parquet"),
            "summary": yaml.safe_load((exp / "summary.json").read_text()), "manifest": tiny_lgg["manifest"]}


def test_interrupted_search_resumes_without_rerunning_finished_trials(experiment):
    first = experiment["first"]
    assert experiment["finished"], "the interruption comes after a finished trial"
    assert (first.trials["status"] == "completed").sum() < 4  # it really was cut short
    assert experiment["cli"].exit_code == 0, experiment["cli"].output
    trials = experiment["trials"]
    assert sorted(trials["trial"]) == [f"trial_{i:05d}" for i in range(4)]
    assert set(trials["status"]) <= {"completed", "stopped"}
    for name, stamp in experiment["stamps"].items():  # finished before the interruption: not trained again
        assert os.stat(experiment["exp"] / "trials" / name / "summary.json").st_mtime_ns == stamp
    for name, history in experiment["trained"].items():
        again = pd.read_parquet(experiment["exp"] / "trials" / name / "history.parquet")
        pd.testing.assert_frame_equal(again, history)
    assert "ranking" in experiment["cli"].output and "best trial" in experiment["cli"].output


def test_trials_table_matches_the_runs(experiment):
    trials, history = experiment["trials"], experiment["history"]
    assert trials["epochs_run"].between(1, 2).all()
    assert experiment["summary"]["trial_epochs"] == trials["epochs_run"].sum() == len(history)
    for row in trials.to_dict(orient="records"):
        runs = history[history["trial"] == row["trial"]]
        assert row["best_val_dice"] == pytest.approx(runs["val_dice"].max())
        assert row["final_val_dice"] == pytest.approx(runs.sort_values("epoch")["val_dice"].iloc[-1])
        assert 1e-3 <= row["config.optim.lr"] <= 3e-2 and row["config.optim.loss"] in ("dice", "bce_dice")
        if row["status"] == "completed":  # independent record: the trial's own training run
            own = pd.read_parquet(experiment["exp"] / "trials" / row["trial"] / "history.parquet")
            assert own["val_dice"].tolist() == pytest.approx(runs.sort_values("epoch")["val_dice"].tolist())
            config = load_config(str(experiment["exp"] / "trials" / row["trial"] / "config.yaml"))
            assert config.optim.lr == pytest.approx(row["config.optim.lr"]) and config.optim.loss == row["config.optim.loss"]
    assert trials["rank"].min() == 1 and trials.loc[trials["rank"] == 1, "best_val_dice"].iloc[0] == pytest.approx(trials["best_val_dice"].max())


def test_best_model_loads_evaluates_and_its_config_trains(experiment):
    from raysegment.evaluate.run import evaluate

    summary, exp = experiment["summary"], experiment["exp"]
    model, meta = load_model(str(exp / "best"))
    assert meta["trial"] == summary["best_trial"] and meta["epoch"] == summary["best_epoch"]
    assert meta["metrics"]["val_dice"] == pytest.approx(experiment["trials"]["best_val_dice"].max())
    run_uri = str(exp / "trials" / summary["best_trial"])
    state = torch.load(io.BytesIO(open(os.path.join(checkpoint_uri(run_uri, summary["best_epoch"]), "state.pt"), "rb").read()),
                       weights_only=True)["model"]
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    result = evaluate(str(exp / "best"), experiment["manifest"], "val", out=str(exp / "best" / "evaluation"))
    assert len(result.cases) and result.cases["dice"].between(0, 1).all()
    best_config = load_config(str(exp / "best_config.yaml"))
    trial = experiment["trials"].set_index("trial").loc[summary["best_trial"]]
    assert best_config.out is None and best_config.optim.lr == pytest.approx(trial["config.optim.lr"])
    assert best_config.model.config == {"base_channels": 4, "depth": 2}


def test_figures_are_written(experiment):
    for name in ("trial_curves.png", "metric_vs_params.png"):
        assert (experiment["exp"] / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_search_algorithms_are_seeded_and_limited():
    from ray.tune.search.basic_variant import BasicVariantGenerator

    config = load_tune_config(overrides={"model": "unet", "seed": 3})
    searcher = _search_alg(config, search_space(config), 2)
    assert isinstance(searcher, BasicVariantGenerator) and searcher.max_concurrent == 2


def test_optuna_is_the_tpe_search_and_refuses_grids():
    from ray.tune.search.optuna import OptunaSearch

    from raysegment.errors import ConfigError

    config = load_tune_config(overrides={"model": "unet", "search": "optuna"})
    assert isinstance(_search_alg(config, search_space(config), 2), OptunaSearch)
    grid = load_tune_config(overrides={"model": "unet", "search": "optuna", "space": {"optim.loss": {"grid": ["dice", "focal"]}}})
    with pytest.raises(ConfigError, match="grid"):
        _search_alg(grid, search_space(grid), 2)
