"""Score a trained model on manifest splits at the original resolution, with tables and figures."""

from raysegment.evaluate.predict import CasePrediction, CaseScorer
from raysegment.evaluate.run import EvalResult, evaluate, resolve_model

__all__ = ["CasePrediction", "CaseScorer", "EvalResult", "evaluate", "resolve_model"]
