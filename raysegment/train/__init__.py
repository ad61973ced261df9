"""Distributed training on Ray Train: ``train(config) -> RunResult``, its typed job config, and
cross-validation over patient folds: ``train_folds(config, folds=K, fold=None) -> FoldsResult``.

``train`` and ``RunResult`` are imported on first use: every Ray Data preprocessing task imports
:mod:`raysegment.train.data`, and so this package, and must not pay for torch models, losses and
Ray Train in each fresh worker process.
"""

from raysegment.train.config import TrainConfig, apply_overrides, load_config, parse_set

__all__ = ["FoldsResult", "RunResult", "TrainConfig", "apply_overrides", "load_config", "parse_set", "train", "train_folds"]


def __getattr__(name: str):
    if name in ("RunResult", "train"):
        from raysegment.train import run

        return getattr(run, name)
    if name in ("FoldsResult", "train_folds"):
        from raysegment.train import folds

        return getattr(folds, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
