"""Score a trained model on manifest splits at the original resolution, with tables and figures."""

from raysegment.evaluate.predict import CasePrediction, CaseScorer, VolumeScorer
from raysegment.evaluate.run import EvalResult, evaluate, resolve_model

__all__ = ["CasePrediction", "CaseScorer", "EvalResult", "VolumeScorer", "evaluate", "resolve_model"]
