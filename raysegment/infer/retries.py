"""The S3 retries the pipeline's workers make, carried to the driver in its rows.

A stage adds the retries its worker process made while on a row (:func:`raysegment.storage.retry_count`
before and after) to the row's ``s3_retries``, on its first output row; the write stage's result
rows thus carry each unit's total, and the driver sums them. A predictor actor adds what loading the
model cost to its first batch. A row lost with its worker (which died) takes its count along.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from raysegment import storage
from raysegment.infer.plan import Plan
from raysegment.infer.predictor import Predictor

COLUMN = "s3_retries"


def counted(stage: Callable[..., list[dict[str, Any]]], row: dict[str, Any], plan: Plan, **kwargs: Any) -> list[dict[str, Any]]:
    """``stage(row, plan, **kwargs)``, its first row carrying the retries ``row`` came with plus those the stage made."""
    start = storage.retry_count()
    rows = stage(row, plan, **kwargs)
    made = int(row.get(COLUMN, 0)) + storage.retry_count() - start
    return [{**out, COLUMN: made if i == 0 else 0} for i, out in enumerate(rows)]


class CountedPredictor(Predictor):
    """A :class:`Predictor` whose batches carry the retries of its actor process: loading the model, then each call."""

    def __init__(self, plan: Plan):
        self._reported = storage.retry_count()
        super().__init__(plan)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        out = super().__call__(batch)
        now = storage.retry_count()
        column = np.array(out[COLUMN], dtype=np.int64)
        column[0] += now - self._reported
        self._reported = now
        return {**out, COLUMN: column}
