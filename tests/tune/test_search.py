"""A real 2-trial Optuna (TPE) + ASHA search of tiny U-Nets on CPU, interrupted after its first
finished trial and resumed through the CLI; then its signed state (and a tampered copy refused),
its tables, the Optuna study that drove it, the best model, best config and figures. One search
serves every test here: trials are what cost."""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import signal
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
import yaml
from ray.tune import Callback
from typer.testing import CliRunner

from raysegment.cli import app
from raysegment.models import load_model
from raysegment.train.config import load_config
from raysegment.train.export import checkpoint_uri
from raysegment.tune import load_tune_config, run_tune
from raysegment.tune.run import TUNE_DIR, _scheduler, _search_alg, search_space
from raysegment.tune.trial import trial_name
from tests.tune.conftest import TINY_TRAIN

pytestmark = pytest.mark.slow

SPACE = {
    "optim.lr": {"loguniform": [1.0e-3, 3.0e-2]},
    "optim.loss": {"choice": ["dice", "bce_dice"]},
    "optim.batch_size": None,
    "optim.weight_decay": None,
    "model.config.encoder": None,
}
# One random trial finishes before the interruption; the resumed search runs the second, TPE's own
# suggestion modelled on the first one's result. Each trial is a full Ray Train run: they are what cost.
SAMPLES, STARTUP = 2, 1


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
        "out": str(root / "exp"), "model": "unet", "manifest": tiny_lgg["manifest"], "samples": SAMPLES, "max_epochs": 2,
        "max_concurrent": 1, "scheduler": "asha", "search": "optuna", "startup_trials": STARTUP, "seed": 0,
        "space": SPACE, "train": TINY_TRAIN,
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
    assert (first.trials["status"] == "completed").sum() < SAMPLES  # it really was cut short
    assert experiment["cli"].exit_code == 0, experiment["cli"].output
    trials = experiment["trials"]
    assert trials["trial"].nunique() == SAMPLES
    assert set(trials["status"]) <= {"completed", "stopped"}
    for name, stamp in experiment["stamps"].items():  # finished before the interruption: not trained again
        assert os.stat(experiment["exp"] / "trials" / name / "summary.json").st_mtime_ns == stamp
    for name, history in experiment["trained"].items():
        again = pd.read_parquet(experiment["exp"] / "trials" / name / "history.parquet")
        pd.testing.assert_frame_equal(again, history)
    assert "ranking" in experiment["cli"].output and "best trial" in experiment["cli"].output


def test_the_resumed_search_signed_its_state_and_would_resume_again(experiment):
    from raysegment.tune.trust import SIGNATURE_FILE, verify_state

    exp = experiment["exp"]
    signed = json.loads((exp / SIGNATURE_FILE).read_text())["files"]
    # the state Tune unpickles on restore, from both sessions: the resume ran on signed state
    assert {"tuner.pkl"} < set(signed) and sum(name.startswith("experiment_state-") for name in signed) == 2
    assert any(name.startswith("searcher-state-") for name in signed)
    verify_state(str(exp), str(exp / TUNE_DIR))


class MakeDir:
    """Unpickled, it creates a folder: what a planted pickle could do on the driver."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


@pytest.mark.parametrize("tamper", ["tuner.pkl", "signature"])
def test_resume_refuses_state_not_written_by_raysegment(experiment, tmp_path, tamper):
    from raysegment.tune.trust import SIGNATURE_FILE

    exp, marker = tmp_path / "exp", tmp_path / "code_ran"
    shutil.copytree(experiment["exp"] / TUNE_DIR, exp / TUNE_DIR)
    shutil.copy(experiment["exp"] / SIGNATURE_FILE, exp / SIGNATURE_FILE)
    if tamper == "tuner.pkl":
        (exp / TUNE_DIR / "tuner.pkl").write_bytes(pickle.dumps(MakeDir(marker)))
        expected = f"{exp / TUNE_DIR / 'tuner.pkl'}: changed since raysegment signed it"
    else:
        (exp / SIGNATURE_FILE).unlink()
        expected = f"{exp / SIGNATURE_FILE}: missing"
    result = CliRunner().invoke(app, ["tune", "--job", experiment["job"], "--out", str(exp)])
    assert result.exit_code == 2 and expected in result.output and "refusing to resume" in result.output
    assert not marker.exists() and not (exp / "trials").exists()  # nothing unpickled, no trial started


def test_trials_table_matches_the_runs(experiment):
    trials, history = experiment["trials"], experiment["history"]
    assert trials["epochs_run"].between(1, 2).all()
    assert experiment["summary"]["trial_epochs"] == trials["epochs_run"].sum() == len(history)
    for row in trials.to_dict(orient="records"):
        runs = history[history["trial"] == row["trial"]]
        # Trials are ranked per patient by default, as training selects its checkpoint.
        assert row["best_val_patient_dice"] == pytest.approx(runs["val_patient_dice"].max())
        assert row["final_val_patient_dice"] == pytest.approx(runs.sort_values("epoch")["val_patient_dice"].iloc[-1])
        assert 1e-3 <= row["config.optim.lr"] <= 3e-2 and row["config.optim.loss"] in ("dice", "bce_dice")
        if row["status"] == "completed":  # independent record: the trial's own training run
            own = pd.read_parquet(experiment["exp"] / "trials" / row["trial"] / "history.parquet")
            assert own["val_patient_dice"].tolist() == pytest.approx(runs.sort_values("epoch")["val_patient_dice"].tolist())
            config = load_config(str(experiment["exp"] / "trials" / row["trial"] / "config.yaml"))
            assert config.optim.lr == pytest.approx(row["config.optim.lr"]) and config.optim.loss == row["config.optim.loss"]
    best = trials.loc[trials["rank"] == 1, "best_val_patient_dice"].iloc[0]
    assert trials["rank"].min() == 1 and best == pytest.approx(trials["best_val_patient_dice"].max())


def test_optuna_tpe_chose_the_trials_and_was_told_their_results(experiment):
    """Tune's saved searcher state is the Optuna study that ran (and, restored, resumed) the search."""
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    searcher = OptunaSearch()
    searcher.restore_from_dir(str(experiment["exp"] / TUNE_DIR))
    # The study OptunaSearch asks and tells, and its Tune trial id -> Optuna trial map (Ray has no public accessor).
    study, asked_by_id = searcher._ot_study, searcher._ot_trials
    assert isinstance(study.sampler, optuna.samplers.TPESampler) and len(study.trials) == SAMPLES
    trials, history = experiment["trials"].set_index("trial"), experiment["history"]
    assert sorted(trial_name(SimpleNamespace(trial_id=i)) for i in asked_by_id) == sorted(trials.index)
    for trial_id, handle in asked_by_id.items():
        name, asked = trial_name(SimpleNamespace(trial_id=trial_id)), study.trials[handle.number]
        assert asked.state == optuna.trial.TrialState.COMPLETE
        assert asked.params["optim.lr"] == pytest.approx(trials.loc[name, "config.optim.lr"])
        assert asked.params["optim.loss"] == trials.loc[name, "config.optim.loss"]
        val_dice = history[history["trial"] == name].set_index("epoch")["val_patient_dice"]
        assert asked.intermediate_values, name  # every epoch's result reached the study
        for epoch, value in asked.intermediate_values.items():
            assert value == pytest.approx(val_dice[epoch])
    # The last trial is TPE's model-based suggestion: a fresh TPE sampler with the same seed,
    # given the first trials and their results, suggests exactly its values.
    replay = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=STARTUP))
    for done in study.trials[:STARTUP]:
        replay.add_trial(done)
    last = study.trials[STARTUP]
    assert replay.ask(last.distributions).params == last.params


def test_best_model_loads_evaluates_and_its_config_trains(experiment):
    from raysegment.evaluate.run import evaluate

    summary, exp = experiment["summary"], experiment["exp"]
    model, meta = load_model(str(exp / "best"))
    assert meta["trial"] == summary["best_trial"] and meta["epoch"] == summary["best_epoch"]
    assert meta["metrics"]["val_patient_dice"] == pytest.approx(experiment["trials"]["best_val_patient_dice"].max())
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
    from ray.tune.experiment import Experiment
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from raysegment.tune.space import to_tune

    def sampled(seed: int) -> list[dict]:
        config = load_tune_config(overrides={"model": "unet", "seed": seed, "samples": 3})
        searcher = _search_alg(config, search_space(config), 3)
        assert isinstance(searcher, BasicVariantGenerator) and searcher.max_concurrent == 3
        searcher.add_configurations(Experiment("x", lambda c: None, config=to_tune(search_space(config))[0], num_samples=3))
        return [trial.config for trial in iter(searcher.next_trial, None)]

    # The same seed samples the same trials (the ASHA benchmark compares schedulers on them).
    assert sampled(3) == sampled(3) != sampled(4)
    assert len(sampled(3)) == 3


def test_optuna_is_the_tpe_search_and_refuses_grids():
    from ray.tune.search.optuna import OptunaSearch

    from raysegment.errors import ConfigError

    config = load_tune_config(overrides={"model": "unet", "search": "optuna", "samples": 8})
    assert isinstance(_search_alg(config, search_space(config), 2), OptunaSearch)
    # TPE starts modelling after half the samples, at most Optuna's 10: a search of 8 is not all random.
    assert config.optuna_startup_trials() == 4
    assert load_tune_config(overrides={"samples": 64}).optuna_startup_trials() == 10
    assert load_tune_config(overrides={"samples": 8, "startup_trials": 2}).optuna_startup_trials() == 2
    grid = load_tune_config(overrides={"model": "unet", "search": "optuna", "space": {"optim.loss": {"grid": ["dice", "focal"]}}})
    with pytest.raises(ConfigError, match="grid"):
        _search_alg(grid, search_space(grid), 2)


def test_asha_stops_weak_trials_at_rungs_but_never_at_the_last_epoch():
    from ray.tune.schedulers import TrialScheduler

    config = load_tune_config(overrides={"max_epochs": 9, "grace_period": 1, "reduction_factor": 3})
    scheduler = _scheduler(config)
    scheduler.set_search_properties(config.metric, config.mode)

    class Trial:  # what the scheduler keeps of a trial
        def __init__(self, trial_id: str):
            self.trial_id = trial_id

    def decisions(trial: Trial, curve: list[float]) -> list[str]:
        scheduler.on_trial_add(None, trial)
        return [scheduler.on_trial_result(None, trial, {"training_iteration": epoch, config.metric: value})
                for epoch, value in enumerate(curve, start=1)]

    # Rungs at epochs 1 and 3 (1 * 3**k below the last epoch): the first trial passes them all.
    assert set(decisions(Trial("a"), [0.5] * 9)) == {TrialScheduler.CONTINUE}
    assert decisions(Trial("b"), [0.1])[0] == TrialScheduler.STOP  # below the first trial at rung 1
    # A trial that passed every rung is not judged at its last epoch, however it ends.
    assert set(decisions(Trial("c"), [0.6] * 8 + [0.0])) == {TrialScheduler.CONTINUE}
