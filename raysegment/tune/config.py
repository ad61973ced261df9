"""The typed configuration of a hyperparameter search (a ``jobs/tune_*.yaml`` file written out).

``train`` is the base training job every trial starts from; ``space`` changes the model's default
search space (see :mod:`raysegment.tune.space`). The CLI options are applied on top with
:func:`load_tune_config`.
"""

from __future__ import annotations

from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from raysegment.config import read_yaml_mapping, validate
from raysegment.train.config import TrainConfig, set_dotted


class TuneConfig(BaseModel):
    """A whole search.

    Attributes:
        out: experiment folder (local or s3://); running again with the same one resumes.
        model: model name; picks the default search space (``train.model.name`` is set to it).
        manifest: the manifest every trial trains on (``train.data.manifest``).
        samples: trials to sample (times the size of any grid).
        max_epochs: epochs of a trial that is not stopped early (``train.optim.epochs``).
        space: changes to the default space, dotted keys -> distribution (None drops a key).
        metric, mode: what ranks trials and drives ASHA/Optuna (any reported metric).
        scheduler: ``asha`` stops bad trials at rungs ``grace_period * reduction_factor**k``;
            ``fifo`` runs every trial to ``max_epochs``.
        search: ``random`` (and grid) sampling, or ``optuna`` (TPE); both seeded by ``seed``.
        startup_trials: Optuna: trials sampled at random before TPE models the results; default
            half the samples, at most 10 (Optuna's own default, which would leave a search of
            fewer than 11 trials purely random).
        gpus_per_trial: GPUs of one trial, shared by its workers; fractions pack trials on a GPU.
        workers_per_trial: Ray Train workers (DDP) of one trial.
        max_concurrent: trials at a time; default what a local instance's CPUs/GPUs hold, no cap on a cluster.
        driver_cpus: CPUs reserved by each trial's driver (the function that runs the TorchTrainer).
        retry_errored: on resume, run errored trials again (from their last checkpoint).
        trial_max_failures: Tune retries of a trial whose driver died.
        train: the base training job.
    """

    model_config = ConfigDict(extra="forbid")

    out: str | None = None
    model: str | None = None
    manifest: str | None = None
    samples: int = Field(8, ge=1)
    max_epochs: int = Field(10, ge=1)
    space: dict[str, Any] = Field(default_factory=dict)
    metric: str = "val_patient_dice"
    mode: Literal["max", "min"] = "max"
    scheduler: Literal["asha", "fifo"] = "asha"
    grace_period: int = Field(1, ge=1, description="ASHA: epochs before a trial may be stopped")
    reduction_factor: float = Field(2.0, gt=1, description="ASHA: 1/fraction of trials kept at each rung")
    search: Literal["random", "optuna"] = "random"
    startup_trials: int | None = Field(None, ge=1, description="Optuna: random trials before TPE")
    seed: int = 0
    gpus_per_trial: float = Field(0.0, ge=0)
    workers_per_trial: int = Field(1, ge=1)
    max_concurrent: int | None = Field(None, ge=1)
    driver_cpus: float = Field(0.1, ge=0)
    retry_errored: bool = False
    trial_max_failures: int = Field(0, ge=-1)
    train: TrainConfig = Field(default_factory=TrainConfig)

    def model_name(self) -> str:
        return self.model or self.train.model.name

    def optuna_startup_trials(self) -> int:
        return self.startup_trials or max(1, min(10, self.samples // 2))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def load_tune_config(job: str | None = None, train_config: str | None = None, space: str | None = None,
                     overrides: dict[str, Any] | None = None, sets: dict[str, Any] | None = None) -> TuneConfig:
    """Build a :class:`TuneConfig` from a tune job file, a base training job, a space file and options.

    Args:
        job: a ``jobs/tune_*.yaml`` file (a TuneConfig written out), or None for the defaults.
        train_config: a training job YAML (``raysegment train --config``) replacing ``job``'s ``train``.
        space: a space YAML whose keys are applied over ``job``'s ``space``.
        overrides: dotted TuneConfig keys (``samples``, ``train.optim.lr``...); None values skipped.
        sets: dotted keys from ``--set``, applied last; a None value sets null
            (``train.model.config.encoder_weights=null``).
    """
    from raysegment.tune.space import load_space

    data = read_yaml_mapping(job) if job else {}
    if train_config:
        data["train"] = read_yaml_mapping(train_config)
    if space:
        data["space"] = {**(data.get("space") or {}), **load_space(space)}
    for key, value in (overrides or {}).items():
        if value is not None:
            set_dotted(data, key, value)
    for key, value in (sets or {}).items():
        set_dotted(data, key, value)
    return validate(TuneConfig, data, job or "tune config")
