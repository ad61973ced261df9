"""Distributed training on Ray Train: ``train(config) -> RunResult`` and its typed job config."""

from raysegment.train.config import TrainConfig, apply_overrides, load_config, parse_set
from raysegment.train.run import RunResult, train

__all__ = ["RunResult", "TrainConfig", "apply_overrides", "load_config", "parse_set", "train"]
