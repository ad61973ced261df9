"""The decode stage: one manifest row -> one case row of preprocessed slices, or a skip/failure row.

Runs as parallel CPU tasks (``Dataset.map``). A case is the unit of a row, so the predictor sees
all slices of a volume together and the write stage reassembles them without any regrouping.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from raysegment.errors import RaySegmentError, ScanReadError
from raysegment.infer.layout import case_key, completed_record
from raysegment.infer.plan import Plan
from raysegment.preprocess import apply_steps, reorient, stack_channels

#: The ``image`` of a row that carries no pixels (skipped or failed): 4D like every other row.
NO_PIXELS = np.zeros((0, 1, 1, 1), np.float32)


def case_row(case_id: str, status: str, stage: str = "", error: str = "", image: np.ndarray = NO_PIXELS,
             meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """A row of the inference dataset; ``status`` is ``ok``, ``skipped`` or ``failed``."""
    return {"case_id": case_id, "key": case_key(case_id), "status": status, "stage": stage, "error": error,
            "image": image, "meta": json.dumps(meta or {}, default=_json_default)}


def decode_case(row: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """Read, stack and preprocess one case as the checkpoint's PreprocessConfig says.

    Returns:
        A :func:`case_row`: ``ok`` with ``image`` ``(S, C, h, w)`` float32 and the geometry needed
        to map predictions back; ``skipped`` with the existing record when the case is already
        complete; ``failed`` with the stage and a one-line error naming the file.
    """
    case_id = str(row["case_id"])
    uris = [str(u) for u in row["image_uris"]]
    try:
        if not plan.overwrite:
            record = completed_record(plan.out, case_id, plan.model_id)
            if record is not None:
                return case_row(case_id, "skipped", meta={"record": record})
        image, meta = _prepare(row, uris, plan)
    except RaySegmentError as exc:
        return case_row(case_id, "failed", "read", str(exc))
    except Exception as exc:  # noqa: BLE001 - a bug or a library surprise must not end the run: record it against the file
        return case_row(case_id, "failed", "preprocess", f"{uris[0] if uris else case_id}: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
    return case_row(case_id, "ok", image=image, meta=meta)


def _prepare(row: dict[str, Any], uris: list[str], plan: Plan) -> tuple[np.ndarray, dict[str, Any]]:
    from raysegment.readers import read_scan

    config = plan.preprocess_config
    scans = [read_scan(u) for u in uris]
    image = stack_channels(scans, [str(c) for c in row["channels"]], config.channels)
    reference = scans[0]
    cut = _slice_index(row) if reference.is_volume else None
    if cut is not None:
        if not 0 <= cut < reference.num_slices:
            raise ScanReadError(uris[0], f"slice_index {cut} outside the {reference.num_slices} slices of the volume")
        image, reference = image[..., cut], reference.slice(cut)
    if image.shape[0] != plan.in_channels:
        raise ScanReadError(uris[0], f"case has {image.shape[0]} channels after selection, the model takes {plan.in_channels}")
    orientation = None
    if image.ndim == 4:
        if image.shape[-1] == 0:
            raise ScanReadError(uris[0], "volume has no slices")
        image, _, orientation = reorient(image, reference.affine, config.orientation)
        slices = [image[..., k] for k in range(image.shape[-1])]
    else:
        slices = [image]
    prepared = [apply_steps(s, None, config) for s in slices]
    meta = {
        "steps": prepared[0][2],  # every slice of a case has the same shape, hence the same record
        "orientation": orientation,
        "affine": reference.affine.tolist(),
        "spacing": list(reference.spacing),
        "metadata": reference.metadata,
        "source_uris": uris,
        "input_format": reference.metadata.get("format") or str(row.get("format") or ""),
        "mask_uri": _optional(row.get("mask_uri")),
        "slice_index": cut,
    }
    return np.stack([p[0] for p in prepared]), meta


def _slice_index(row: dict[str, Any]) -> int | None:
    """The slice to cut from a volume file for a ``slice`` row; None for whole-file cases."""
    index = _optional(row.get("slice_index"))
    return int(index) if index is not None and row.get("level") == "slice" else None


def _optional(value: Any) -> Any:
    if value is None:
        return None
    try:
        return None if np.isnan(value) else value
    except TypeError:
        return value


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")
