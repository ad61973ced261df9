"""The decode stage: one unit row -> one row of its preprocessed slices, or a skip/failure row.

Runs as parallel CPU tasks (``Dataset.flat_map``). A unit (see :mod:`raysegment.infer.units`) is a
case, or the slices of one patient volume; its row carries every slice of it, so the predictor sees
them together and the write stage post-processes the volume without any regrouping.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from raysegment.errors import RaySegmentError, ScanReadError
from raysegment.infer.layout import case_key
from raysegment.infer.plan import Plan
from raysegment.preprocess import apply_steps, normalise_slices, reorient, reoriented_spacing, stack_channels

#: The ``image`` of a row that carries no pixels (no case could be read): 4D like every other row of
#: a 2D model (a 3D model's rows are 5D, :func:`no_pixels`), as one tensor column needs.
NO_PIXELS = np.zeros((0, 1, 1, 1), np.float32)


def no_pixels(plan: Plan) -> np.ndarray:
    """The empty ``image`` of a row of ``plan``'s model: 4D for 2D models, 5D for 3D ones."""
    return NO_PIXELS if plan.preprocess_config.dims == 2 else NO_PIXELS[..., None]


def unit_row(unit: str, status: str, cases: list[dict[str, Any]], image: np.ndarray = NO_PIXELS,
             stage: str = "", error: str = "") -> dict[str, Any]:
    """A row of the inference dataset.

    Args:
        unit: the unit's name, for messages.
        status: ``ok`` (some case has slices in ``image``) or ``failed`` (no case could be read;
            or, set by the predictor, the model failed).
        cases: one entry per case, in slice order (see :func:`case_entry`).
        image: ``(S, C, h, w)`` float32: the slices of the ``ok`` cases, in order (a 3D model's
            one volume: ``(1, C, d, h, w)``).
    """
    meta = json.dumps({"cases": cases}, default=_json_default)
    return {"unit": unit, "status": status, "stage": stage, "error": error, "image": image, "meta": meta}


def case_entry(case_id: str, status: str, stage: str = "", error: str = "", slices: int = 0,
               meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """One case of a unit: ``ok`` with its ``slices`` count and geometry ``meta``, or ``failed``."""
    return {"case_id": case_id, "key": case_key(case_id), "status": status, "stage": stage, "error": error,
            "slices": slices, "meta": meta or {}}


def decode_unit(row: dict[str, Any], plan: Plan) -> list[dict[str, Any]]:
    """Read, stack and preprocess the cases of one unit as the checkpoint's PreprocessConfig says.

    Complete units never get here (:mod:`.skip`); a unit some of whose cases are complete is
    redone whole, since the post-processing of each slice needs all the others. A case that
    cannot be read becomes a ``failed`` entry; the others go on.

    Returns:
        One :func:`unit_row`; or one per case when the slices' preprocessed shapes differ, since
        the predictor takes one array per row (such slices are post-processed one by one anyway).
    """
    unit, cases = str(row["unit"]), json.loads(row["cases"])
    decoded = _normalise_unit([read_case(c, plan) for c in cases], plan)
    shapes = {image.shape[1:] for _, image in decoded if image is not None}
    parts = [decoded] if len(shapes) <= 1 else [[d] for d in decoded]
    return [_unit_row(unit, part, plan) for part in parts]


def read_case(row: dict[str, Any], plan: Plan) -> tuple[dict[str, Any], list[np.ndarray] | None]:
    """One case's :func:`case_entry` and its raw ``(C, H, W)`` slices, before any step (None when it failed).

    A failed entry names the stage and gives a one-line error naming the file.
    """
    case_id = str(row["case_id"])
    uris = [str(u) for u in row["image_uris"]]
    try:
        slices, meta = _read(row, uris, plan)
    except RaySegmentError as exc:
        return case_entry(case_id, "failed", "read", str(exc)), None
    except Exception as exc:  # noqa: BLE001 - a bug or a library surprise must not end the run: record it against the file
        return case_entry(case_id, "failed", "preprocess", _one_line(uris, case_id, exc)), None
    return case_entry(case_id, "ok", slices=len(slices), meta=meta), slices


def _normalise_unit(read: list[tuple[dict[str, Any], list[np.ndarray] | None]], plan: Plan):
    """Run the volume-scope steps over all the unit's slices, then each slice's own steps.

    Returns:
        one (entry, ``(S, C, h, w)`` float32 or None) per case.
    """
    config = plan.preprocess_config
    ok = [(entry, slices) for entry, slices in read if slices is not None]
    try:
        normalised = iter(normalise_slices([s for _, slices in ok for s in slices], config))
    except Exception as exc:  # noqa: BLE001 - recorded against every case of the unit
        failed = {id(entry): case_entry(entry["case_id"], "failed", "preprocess", _one_line(entry["meta"]["source_uris"], entry["case_id"], exc))
                  for entry, _ in ok}
        return [(failed.get(id(entry), entry), None) for entry, _ in read]
    out = []
    for entry, slices in read:
        if slices is None:
            out.append((entry, None))
            continue
        mine = [next(normalised) for _ in slices]
        try:
            prepared = [apply_steps(s, None, config, volume_normalised=True, spacing=entry["meta"].get("grid_spacing")) for s in mine]
        except Exception as exc:  # noqa: BLE001 - a bug or a library surprise must not end the run: record it against the file
            out.append((case_entry(entry["case_id"], "failed", "preprocess", _one_line(entry["meta"]["source_uris"], entry["case_id"], exc)), None))
            continue
        entry["meta"]["steps"] = prepared[0][2]  # every slice of a case has the same shape, hence the same record
        out.append((entry, np.stack([p[0] for p in prepared])))
    return out


def _one_line(uris: list[str], case_id: str, exc: Exception) -> str:
    return f"{uris[0] if uris else case_id}: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"


def _unit_row(unit: str, decoded: list[tuple[dict[str, Any], np.ndarray | None]], plan: Plan) -> dict[str, Any]:
    images = [image for _, image in decoded if image is not None]
    if not images:
        return unit_row(unit, "failed", [entry for entry, _ in decoded], image=no_pixels(plan))
    return unit_row(unit, "ok", [entry for entry, _ in decoded], image=np.concatenate(images))


def _read(row: dict[str, Any], uris: list[str], plan: Plan) -> tuple[list[np.ndarray], dict[str, Any]]:
    from raysegment.manifest import expected_slices
    from raysegment.readers import read_scan

    config = plan.preprocess_config
    scans = [read_scan(u, num_slices=expected_slices(row)) for u in uris]
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
        # A 3D model takes the volume whole; a 2D model its slices along the last axis.
        slices = [image] if config.dims == 3 else [image[..., k] for k in range(image.shape[-1])]
    elif config.dims == 3:
        raise ScanReadError(uris[0], f"the model is 3D and needs a volume; this case is one {image.shape[1:]} slice")
    else:
        slices = [image]
    meta = {
        "steps": [],
        "orientation": orientation,
        "affine": reference.affine.tolist(),
        "spacing": list(reference.spacing),
        "metadata": reference.metadata,
        "source_uris": uris,
        "input_format": reference.metadata.get("format") or str(row.get("format") or ""),
        "mask_uri": _optional(row.get("mask_uri")),
        "slice_index": cut,
    }
    if config.dims == 3:
        meta["grid_spacing"] = list(reoriented_spacing(reference.spacing, orientation))
    return slices, meta


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
