"""Bulk inference with Ray Data: ``run_inference(InferConfig(...)) -> InferenceResult``.

Rows are units (:mod:`.units`: a case, or the slices of one patient volume). Stages (one module
each): :mod:`.decode` (read + preprocess a unit's cases), :mod:`.predictor` (actor pool that loads
the checkpoint once), :mod:`.postprocess` (back to the input grid, then the checkpoint's
post-processing over the whole unit), :mod:`.write` (per case: mask, metrics, record);
:mod:`.layout` defines output keys and completion records, :mod:`.run` wires the pipeline and
writes ``metrics.parquet``, ``errors.parquet`` and ``run.json``.
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
