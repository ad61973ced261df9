"""One trial = one full Ray Train run of :func:`raysegment.train.run.train`, reporting to Tune.

This is the Train V2 + Tune pattern of Ray's docs (``train_tune_interop.py``): a Tune *function
trainable* (the trial's driver) builds the trial's :class:`TrainConfig` and launches the
TorchTrainer with ``TuneReportCallback`` in its callbacks, so every epoch's metrics reach Tune
(and ASHA) as one training iteration.

Each trial's run folder is ``EXP/trials/<trial name>``, and trial names are deterministic
(``trial_00003``: Tune's trial counter), never timestamps. A trial that Tune restarts (resume,
retry) therefore calls ``train`` with the same run folder, and Ray Train resumes from the
trial's latest checkpoint there.

Resources: in Train V2 the TorchTrainer reserves its workers in its own placement group, outside
the trial's. The trial itself reserves only its driver (``driver_cpus``), and
:func:`raysegment.sizing.size_tune` caps how many trials run at once by what the workers of one
trial need, as Ray's docs recommend, so trials never wait on each other's workers. When Tune stops a
trial, :mod:`raysegment.tune.cleanup` frees the group its training run leaves behind.
"""

from __future__ import annotations

from typing import Any

from raysegment import storage
from raysegment.train.config import TrainConfig, apply_overrides

TRIALS_DIR = "trials"


def trial_name(trial) -> str:
    """``trial_00003`` from Tune's trial id ``<experiment hash>_00003``: stable across resumes."""
    return f"trial_{trial.trial_id.rsplit('_', 1)[-1]}"


def trial_run_uri(exp_uri: str, name: str) -> str:
    return storage.join(exp_uri, TRIALS_DIR, name)


def scaling_overrides(workers: int, gpus_per_trial: float) -> dict[str, Any]:
    """Per-worker resources of a trial: its GPUs are split evenly over its workers.

    ``gpus_per_trial=0.25`` with one worker gives each trial a quarter GPU: four trials share one.
    """
    return {"scaling.workers": workers, "scaling.gpus_per_worker": gpus_per_trial / workers}


def trial_config(base: TrainConfig, params: dict[str, Any], run_uri: str) -> TrainConfig:
    """The trial's training job: ``base`` with the sampled ``params``; no console output of its own."""
    return apply_overrides(base, {**params, "out": run_uri, "tracking.progress": False}, source=f"trial {run_uri}")


def run_trial(params: dict[str, Any], base: dict, exp_uri: str, encoded: list[str]) -> None:
    """Tune function trainable: the trial's driver.

    Args:
        params: the values Tune sampled for this trial (dotted config keys).
        base: the base TrainConfig (dumped), with scaling and epochs already set.
        exp_uri: the experiment folder.
        encoded: keys of ``params`` holding JSON-encoded choices.
    """
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from raysegment.train.run import train
    from raysegment.tune.space import decode_params

    run_uri = trial_run_uri(exp_uri, tune.get_context().get_trial_name())
    config = trial_config(TrainConfig.model_validate(base), decode_params(params, encoded), run_uri)
    train(config, callbacks=[TuneReportCallback()])
