"""One implementation of every segmentation metric, used by training, evaluation, tuning and inference.

Masks are boolean (nonzero = foreground), one channel per class ``(K, *spatial)`` for a case and
``(N, K, *spatial)`` for a batch, 2D slices or 3D volumes.

Empty-mask convention (the same everywhere):

* prediction and reference both empty: Dice = IoU = precision = recall = specificity = 1,
  HD95 = ASSD = 0, ``distance_undefined`` False: nothing to find and nothing wrongly found.
* exactly one empty: Dice = IoU = 0; HD95 and ASSD are NaN (never inf) with ``distance_undefined``
  True; :func:`aggregate` leaves the NaNs out of means and percentiles and counts them in ``n_nan``.
* any ratio with a zero denominator (precision with an empty prediction, recall with an empty
  reference, specificity with a full reference) is 1 when the case has no error (fp = fn = 0)
  and 0 otherwise; ``fnr = 1 - recall``.

Distances are in mm (``spacing``); volumes in mL for 3D cases and mm^2 (area) for 2D slices.
"""

from raysegment.metrics.aggregate import STATISTICS, aggregate
from raysegment.metrics.case import CASE_METRICS, case_metrics
from raysegment.metrics.confusion import SCORE_NAMES, confusion_counts, scores_from_counts
from raysegment.metrics.distance import distance_metrics, surface_distances

__all__ = [
    "CASE_METRICS",
    "SCORE_NAMES",
    "STATISTICS",
    "aggregate",
    "case_metrics",
    "confusion_counts",
    "distance_metrics",
    "scores_from_counts",
    "surface_distances",
]
