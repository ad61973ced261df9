"""Units: the cases that travel through the pipeline together, as one row.

The slices of one patient volume (manifest ``slice`` rows sharing a ``volume_id``; LGG stores one
TIFF per slice) form one unit, in ``slice_index`` order: the write stage can then post-process
them as the volume they are (the largest connected component in 3D, as validation and
``evaluate`` do). Every other case (a volume row, a slice of no known volume) is a unit alone.
Results stay per case: each case of a unit ends as its own mask, record or error row.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from raysegment.manifest import expected_slices

#: What decoding a case needs from its manifest row.
CASE_COLUMNS = ["case_id", "level", "image_uris", "channels", "mask_uri", "slice_index", "num_slices", "format"]


def group_units(manifest: pd.DataFrame) -> pd.DataFrame:
    """The manifest's cases grouped into units, in the order of their first case.

    Returns:
        One row per unit: ``unit`` (``volume <volume_id>`` or ``case <case_id>``, for messages),
        ``cases`` (its manifest rows as a JSON list: Arrow would turn nested rows into structs of
        numpy values) and ``slices`` (the slices it is expected to hold, to size predictor calls).
    """
    volume_ids = manifest["volume_id"] if "volume_id" in manifest else pd.Series(None, index=manifest.index, dtype=object)
    grouped = (manifest["level"] == "slice") & volume_ids.notna()
    names = ("volume " + volume_ids.astype(str)).where(grouped, "case " + manifest["case_id"].astype(str))
    # One conversion of the whole manifest, not one per unit: a night's manifest holds 10^4 slices.
    records = manifest.reindex(columns=CASE_COLUMNS).astype(object).where(manifest.reindex(columns=CASE_COLUMNS).notna(), None)
    rows = records.to_dict(orient="records")
    members: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        members.setdefault(name, []).append(i)
    units = []
    for name, indices in members.items():
        cases = [rows[i] for i in indices]
        if len(cases) > 1:  # slice order, cases without a slice index last
            cases.sort(key=lambda case: (case["slice_index"] is None, case["slice_index"] or 0))
        units.append({"unit": name, "cases": json.dumps(cases, default=_plain), "slices": sum(map(_slices, cases))})
    return pd.DataFrame(units, columns=["unit", "cases", "slices"])


#: Slices a block should hold at least. Each block costs a Ray task per stage (tens of milliseconds
#: on 2 cores), as much as segmenting ten 32 px LGG slices: blocks of one such patient each made
#: the overhead the pipeline's main cost (benchmarks/nightly.py, 2026-12-02).
MIN_BLOCK_SLICES = 64
#: Blocks each predictor should get at least, so a small run still keeps every predictor busy to the end.
BLOCKS_PER_PREDICTOR = 4


def units_per_call(units: pd.DataFrame, batch_size: int, predictors: int = 1) -> int:
    """Units per block (one predictor call): about ``max(batch_size, MIN_BLOCK_SLICES)`` slices, at
    least one unit, and small enough that each of ``predictors`` gets ``BLOCKS_PER_PREDICTOR`` blocks."""
    per_unit = max(float(units["slices"].median()) if len(units) else 1.0, 1.0)
    wanted = int(max(batch_size, MIN_BLOCK_SLICES) // per_unit)
    spread = -(-len(units) // (BLOCKS_PER_PREDICTOR * max(predictors, 1)))
    return max(1, min(wanted, spread))


def _slices(case: dict[str, Any]) -> int:
    return expected_slices(case) or 1


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if value is pd.NA:
        return None
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")
