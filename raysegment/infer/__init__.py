"""Bulk inference with Ray Data: ``run_inference(InferConfig(...)) -> InferenceResult``.

Stages (one module each): :mod:`.decode` (read + preprocess a case), :mod:`.predictor` (actor pool
that loads the checkpoint once), :mod:`.postprocess` (back to the input grid, threshold, cleanup),
:mod:`.write` (mask, metrics, record); :mod:`.layout` defines output keys and completion records,
:mod:`.run` wires the pipeline and writes ``metrics.parquet``, ``errors.parquet`` and ``run.json``.
"""

from raysegment.infer.config import InferConfig
from raysegment.infer.layout import case_key
from raysegment.infer.run import (
    EXIT_OK,
    EXIT_SOME_FAILED,
    InferenceResult,
    run_inference,
)

__all__ = ["EXIT_OK", "EXIT_SOME_FAILED", "InferConfig", "InferenceResult", "case_key", "run_inference"]
