"""Hyperparameter search with Ray Tune over Ray Train runs (``raysegment tune``)."""

from raysegment.tune.config import TuneConfig, load_tune_config
from raysegment.tune.run import TuneResult, run_tune, search_space
from raysegment.tune.space import default_space

__all__ = ["TuneConfig", "TuneResult", "default_space", "load_tune_config", "run_tune", "search_space"]
