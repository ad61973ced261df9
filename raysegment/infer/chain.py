"""The fused stage: a predictor actor that decodes, segments and writes its blocks itself.

On a machine whose predictors run on its CPUs, decode and write tasks buy no parallelism that the
predictor pool does not already have, and each costs a task per block and the transfer of the
block's pixels and probabilities between processes. There each predictor runs the whole chain, one
block at a time, with the same stage functions (:func:`.decode.decode_unit`, :class:`.Predictor`,
:func:`.write.write_unit`), each under its own deadline. GPU predictors keep the split pipeline
(:mod:`.run`): their GPU must not wait while they read and write scans.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from raysegment import storage
from raysegment.infer.decode import decode_unit
from raysegment.infer.plan import Plan
from raysegment.infer.predictor import Predictor, ragged
from raysegment.infer.retries import COLUMN
from raysegment.infer.watchdog import bounded
from raysegment.infer.write import write_unit


class ChainPredictor(Predictor):
    """Callable class for ``map_batches`` over manifest unit rows (``unit``, ``cases``): returns their case result rows.

    Args:
        plan: the run's plan.
        overlays: ids of the cases to draw an overlay of (:func:`.write.overlay_cases`).
    """

    def __init__(self, plan: Plan, overlays: frozenset[str] = frozenset()):
        self._reported = storage.retry_count()  # loading the model counts towards the first block's retries
        super().__init__(plan)
        self.overlays = overlays

    def __call__(self, batch: dict[str, np.ndarray]) -> pd.DataFrame:
        decoded = [row for unit, cases in zip(batch["unit"], batch["cases"])
                   for row in bounded(decode_unit, {"unit": str(unit), "cases": str(cases)}, self.plan)]
        predicted = super().__call__(_columns(decoded))
        rows = [dict(zip(predicted, values)) for values in zip(*predicted.values())]
        results = pd.DataFrame([result for row in rows for result in bounded(write_unit, row, self.plan, overlays=self.overlays)])
        now = storage.retry_count()
        results[COLUMN] = [now - self._reported] + [0] * (len(results) - 1)
        self._reported = now
        return results


def _columns(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Rows as the predictor's batch: one object column per key (the slices of units differ in shape)."""
    return {key: ragged([row[key] for row in rows]) for key in rows[0]}
