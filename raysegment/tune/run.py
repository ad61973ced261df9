"""``run_tune(config) -> TuneResult``: a Ray Tune search whose trials are Ray Train runs.

The experiment folder ``EXP`` (local or s3://) holds ``tune/`` (Tune's own state, which makes the
search resumable), ``trials/<trial>/`` (each trial's training run folder, as ``raysegment train``
writes it), and the reports: ``trials.parquet``, ``history.parquet``, ``best/``,
``best_config.yaml``, ``tune_config.yaml``, ``summary.json``, ``trial_curves.png`` and
``metric_vs_params.png``.

Running the same search again with the same ``out`` resumes it (``Tuner.restore``): finished
trials are kept as they are, unfinished ones continue from their last checkpoint, errored ones
are run again only with ``retry_errored``. Only state this driver's key signed is resumed
(``tune_state.sig``, see :mod:`raysegment.tune.trust`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import pandas as pd

from raysegment import storage
from raysegment.errors import ConfigError, RaySegmentError
from raysegment.runtime import init_ray, local_resources
from raysegment.sizing import size_tune
from raysegment.train.config import apply_overrides
from raysegment.tune import plots, results
from raysegment.tune import space as spaces
from raysegment.tune.config import TuneConfig
from raysegment.tune.trial import run_trial, scaling_overrides, trial_name

TUNE_DIR = "tune"


@dataclass
class TuneResult:
    """Attributes:
        exp_uri: the experiment folder.
        trials: one row per trial (``trials.parquet``).
        history: one row per trial and epoch.
        best_trial: name of the best trial; ``best`` its best epoch's metrics.
        best_model_uri, best_config_uri: ``EXP/best`` and ``EXP/best_config.yaml``.
        resumed: whether this call continued an earlier search.
    """

    exp_uri: str
    trials: pd.DataFrame
    history: pd.DataFrame
    best_trial: str
    best: dict
    best_model_uri: str
    best_config_uri: str
    figures: dict[str, str] = field(default_factory=dict)
    resumed: bool = False
    summary: dict = field(default_factory=dict)


def search_space(config: TuneConfig) -> dict:
    """The model's default space with ``config.space`` applied."""
    return spaces.merge_space(spaces.default_space(config.model_name()), config.space)


def _scheduler(config: TuneConfig):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if config.scheduler == "fifo":
        return FIFOScheduler()
    # Rungs are counted in epochs (every report of a trial is one) and lie below max_t. A trial
    # stopped at its last epoch saves nothing and loses the reports its training run writes when
    # it ends, so the last rung comes before the last epoch, and a trial that passed every rung
    # runs on (stop_last_trials=False) until its training run ends by itself.
    grace = min(config.grace_period, config.max_epochs)
    return ASHAScheduler(time_attr="training_iteration", max_t=max(config.max_epochs - 1, grace), grace_period=grace,
                         reduction_factor=config.reduction_factor, stop_last_trials=False)


def _search_alg(config: TuneConfig, space: dict, max_concurrent: int | None):
    if config.search == "random":
        from ray.tune.search.basic_variant import BasicVariantGenerator

        # Seeded: the same search samples the same trials (benchmarks compare schedulers on them).
        # Tune applies max_concurrent_trials to a generator it makes itself, not to one passed in.
        return BasicVariantGenerator(max_concurrent=max_concurrent or 0, random_state=config.seed)  # 0: no cap
    if spaces.has_grid(space):
        raise ConfigError("search space: grid values need --search random (Optuna samples, it does not enumerate)")
    from optuna.samplers import TPESampler
    from ray.tune.search.optuna import OptunaSearch

    return OptunaSearch(sampler=TPESampler(seed=config.seed, n_startup_trials=config.optuna_startup_trials()))


def base_train_config(config: TuneConfig):
    """The training job every trial starts from: the search's model, manifest, epochs and scaling."""
    manifest = config.manifest or config.train.data.manifest
    changes = {
        "model.name": config.model,
        # absolute: a trial's driver runs in its own working directory
        "data.manifest": storage.normalize(manifest) if manifest else None,
        "optim.epochs": config.max_epochs,
        **scaling_overrides(config.workers_per_trial, config.gpus_per_trial),
    }
    return apply_overrides(config.train, {k: v for k, v in changes.items() if v is not None}, source="tune base config")


def check_models(base, space: dict, limit: int = 256) -> None:
    """Build (shapes only, nothing downloaded) the model of every combination of the space's model choices.

    Options that do not go together (``base_channels`` of the base job with a searched smp
    encoder) then fail here, once, naming the combination, rather than in the trials that draw it.

    Raises:
        ConfigError: a combination's model does not build.
    """
    import itertools

    import torch

    from raysegment.models import ModelSpec

    keys = [k for k in spaces.searched_keys(space) if (k == "model" or k.startswith("model.")) and
            next(iter(space[k])) in ("choice", "grid")]
    for combo in itertools.islice(itertools.product(*(next(iter(space[k].values())) for k in keys)), limit):
        params = dict(zip(keys, combo))
        model = apply_overrides(base, spaces.decode_params(params, []), source="search space").model
        try:
            with torch.device("meta"):
                ModelSpec(model.name, config=model.config).build(pretrained=False)
        except RaySegmentError as exc:
            drawn = ", ".join(f"{k}={v}" for k, v in params.items()) or "the base job's model"
            raise ConfigError(f"search space: trials drawing {drawn} would fail: {exc}") from None


def run_tune(config: TuneConfig, address: str | None = None, console=None, callbacks: list | None = None) -> TuneResult:
    """Run (or resume) the search and write its reports.

    Args:
        config: the search; ``out`` and a manifest (``manifest`` or ``train.data.manifest``) must be set.
        console: a rich Console for the live trial table, or None.
        callbacks: extra Tune ``Callback``s (driver side), after the live trial table.
    """
    from ray import tune

    from raysegment.tune.cleanup import ReleaseStoppedTrials
    from raysegment.tune.reporter import LiveTrialTable
    from raysegment.tune.trust import SignState, verify_state

    if not config.out:
        raise ConfigError("tune: an experiment folder (--out) is needed")
    base = base_train_config(config)
    if not base.data.manifest:
        raise ConfigError("tune: a manifest (--manifest or train.data.manifest) is needed")
    exp_uri = storage.normalize(config.out)
    space = search_space(config)
    param_space, encoded = spaces.to_tune(space)
    keys = spaces.searched_keys(space)
    for key, value in param_space.items():  # a bad key or value fails here, once, not in every trial
        sample = value.sample() if hasattr(value, "sample") else value
        if isinstance(sample, dict) and "grid_search" in sample:
            sample = sample["grid_search"][0]
        apply_overrides(base, spaces.decode_params({key: sample}, encoded), source=f"search space {key!r}")
    check_models(base, space)

    started = time.perf_counter()
    init_ray(address)
    # A cluster's autoscaler adds nodes for queued trials, so only a local instance caps them by its size.
    sizing = size_tune(local_resources(address), config.samples, base.scaling.workers, base.scaling.cpus_per_worker,
                       base.scaling.gpus_per_worker, config.driver_cpus, config.max_concurrent)
    if console is not None:
        console.print(sizing.line(), markup=False, highlight=False, soft_wrap=True)
    base = base.model_copy(update={"scaling": base.scaling.model_copy(update={"cpus_per_worker": sizing.cpus_per_worker})})
    concurrent = sizing.concurrent
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, base=base.model_dump(mode="json"), exp_uri=exp_uri, encoded=encoded),
        {"CPU": config.driver_cpus},
    )
    tune_uri = storage.join(exp_uri, TUNE_DIR)
    # Signing comes first: a later callback that fails at the end must not leave the state unsigned.
    callbacks = [SignState(exp_uri, tune_uri), LiveTrialTable(console, config.metric, config.mode, keys, config.max_epochs),
                 ReleaseStoppedTrials(), *(callbacks or [])]
    fs, tune_path = storage.filesystem(tune_uri)
    resumed = tune.Tuner.can_restore(tune_path, storage_filesystem=fs)
    if resumed:
        verify_state(exp_uri, tune_uri)  # before Ray unpickles anything
        tuner = tune.Tuner.restore(tune_path, trainable, resume_errored=config.retry_errored, storage_filesystem=fs)
        # tuner.pkl holds the first session's run config, callbacks included; this session reports
        # through its own (Ray has no public way to hand them to a restored Tuner).
        tuner._local_tuner.get_run_config().callbacks = callbacks
    else:
        storage.write_bytes(storage.join(exp_uri, "tune_config.yaml"), config.to_yaml().encode())
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(
                metric=config.metric, mode=config.mode, num_samples=config.samples, scheduler=_scheduler(config),
                search_alg=_search_alg(config, space, concurrent),
                max_concurrent_trials=concurrent if config.search != "random" else None,
                trial_name_creator=trial_name, trial_dirname_creator=trial_name,
            ),
            run_config=tune.RunConfig(
                name=storage.basename(tune_path), storage_path=storage.parent(tune_path), storage_filesystem=fs,
                callbacks=callbacks, verbose=0,
                failure_config=tune.FailureConfig(max_failures=config.trial_max_failures),
            ),
        )
    grid = tuner.fit()
    return write_reports(config, grid, exp_uri, keys, encoded, resumed, time.perf_counter() - started)


def write_reports(config: TuneConfig, grid, exp_uri: str, keys: list[str], encoded: list[str], resumed: bool,
                  wall_s: float) -> TuneResult:
    """Trials and history tables, the best model and config, figures and ``summary.json``."""
    trials, history = results.collect(grid, exp_uri, config.metric, config.mode, encoded)
    results.write_parquet(trials, storage.join(exp_uri, "trials.parquet"))
    results.write_parquet(history, storage.join(exp_uri, "history.parquet"))
    if config.metric not in history or history[config.metric].isna().all():
        errors = [e for e in trials.get("error", pd.Series(dtype=object)).dropna() if str(e).strip()]
        first = " ".join(str(errors[0]).split())[-300:] if errors else "none recorded"  # a traceback ends with the error
        counts = ", ".join(f"{n} {s}" for s, n in trials["status"].value_counts().items())
        raise RaySegmentError(f"{exp_uri}: no trial reported {config.metric} ({counts}); the first error ends: ...{first} "
                              "(trials.parquet has them all)")
    best = results.best_epoch(history, exp_uri, config.metric, config.mode)
    best_model_uri, best_config_uri = results.export_best(exp_uri, best)
    log_keys = [k for k, s in search_space(config).items() if isinstance(s, dict) and "loguniform" in s]
    figures = {
        "trial_curves": plots.trial_curves(history, trials, config.metric, storage.join(exp_uri, "trial_curves.png")),
        "metric_vs_params": plots.metric_vs_params(trials, keys, config.metric, storage.join(exp_uri, "metric_vs_params.png"), log_keys),
    }
    best_metrics = {k: float(v) for k, v in best.items() if k.startswith(("train_", "val_")) and pd.notna(v)}
    summary = {
        "exp_uri": exp_uri,
        "metric": config.metric,
        "mode": config.mode,
        "scheduler": config.scheduler,
        "search": config.search,
        "best_trial": best["trial"],
        "best_epoch": int(best["epoch"]),
        "best": best_metrics,
        "best_model_uri": best_model_uri,
        "best_config_uri": best_config_uri,
        "trials": int(len(trials)),
        "status_counts": {str(k): int(v) for k, v in trials["status"].value_counts().items()},
        "trial_epochs": int(trials["epochs_run"].sum()),
        "wall_time_s": wall_s,
        "model": config.model_name(),
    }
    storage.write_bytes(storage.join(exp_uri, "summary.json"), json.dumps(summary, indent=2).encode())
    return TuneResult(exp_uri=exp_uri, trials=trials, history=history, best_trial=best["trial"], best=best_metrics,
                      best_model_uri=best_model_uri, best_config_uri=best_config_uri, figures=figures,
                      resumed=resumed, summary=summary)
