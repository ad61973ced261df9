"""The write stage: one predicted unit -> per case, its mask (and probabilities) on storage, metrics, then its record.

A unit's cases are post-processed together (a patient's slices as one volume, see
:func:`raysegment.infer.postprocess.postprocess_unit`) and then finished one by one: each ends as
its own ``done`` or ``failed`` result row. A record is written last and only after
every file it names is complete, so a run killed at any point leaves each case either complete or
redoable (see :mod:`raysegment.infer.layout`). The cases :func:`overlay_cases` picks also get
``OUT/overlays/<key>.png``, their image and predicted mask, named in the record as ``overlay``.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from raysegment import storage
from raysegment.errors import RaySegmentError, ScanReadError
from raysegment.infer import layout
from raysegment.infer.plan import Plan
from raysegment.infer.postprocess import foreground_ml, postprocess_unit, to_input_grid
from raysegment.preprocess import label_image
from raysegment.writers import WRITERS, Reference, output_format


def overlay_cases(manifest: pd.DataFrame, count: int) -> frozenset[str]:
    """The ids of the first ``count`` cases of ``manifest`` without ground truth, whose overlays a run draws.

    Chosen on the driver, from the whole manifest: a write task sees only its own unit.
    """
    if not count:
        return frozenset()
    return frozenset(manifest.loc[manifest["mask_uri"].isna(), "case_id"].astype(str).head(count))


def write_unit(row: dict[str, Any], plan: Plan, overlays: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """Finish the cases of one unit row from the predictor.

    Args:
        overlays: ids of the cases to draw an overlay of (:func:`overlay_cases`).

    Returns:
        One small result row per case, in the unit's order: ``case_id``, ``key``, ``status``
        (``done`` or ``failed``; :mod:`.skip` makes the ``skipped`` ones), ``stage``, ``error``,
        ``slices``, ``record`` (JSON, empty for failures).
    """
    entries = json.loads(row["meta"])["cases"]
    results = [_settled(entry, row) for entry in entries]
    grids: dict[int, np.ndarray] = {}  # probabilities on the input grid, by the index of their case
    first = 0
    for i in [i for i, result in enumerate(results) if result is None]:
        entry, count = entries[i], int(entries[i]["slices"])
        try:  # the cases' slices lie in ``prob`` one after the other, in the unit's order
            grids[i] = to_input_grid(np.asarray(row["prob"][first : first + count]), entry["meta"]["steps"],
                                     entry["meta"]["orientation"], volume=len(entry["meta"]["spacing"]) == 3)
        except Exception as exc:  # noqa: BLE001 - one bad case must not end the run
            results[i] = _failure(entry, "postprocess", exc, plan)
        first += count
    try:
        masks = dict(zip(grids, postprocess_unit(list(grids.values()), plan.postprocess_config, plan.preprocess_config.exclusive)))
    except Exception as exc:  # noqa: BLE001 - one bad unit must not end the run
        masks = {}
        for i in grids:
            results[i] = _failure(entries[i], "postprocess", exc, plan)
    seconds_per_slice = float(row["predict_seconds"]) / max(len(row["prob"]), 1)
    for i, mask in masks.items():
        results[i] = _write_case(entries[i], mask, grids[i], seconds_per_slice * int(entries[i]["slices"]), plan,
                                 str(entries[i]["case_id"]) in overlays)
    return results


def _settled(entry: dict[str, Any], row: dict[str, Any]) -> dict[str, Any] | None:
    """The result of a case that gets no mask (unreadable, or its unit failed in the model); None for the others."""
    if entry["status"] != "ok":
        return result_row(entry, "failed", entry["stage"], entry["error"])
    if row["status"] != "ok":
        return result_row(entry, "failed", str(row["stage"]), str(row["error"]))
    return None


def _write_case(entry: dict[str, Any], mask: np.ndarray, prob: np.ndarray, seconds: float, plan: Plan,
                overlay: bool = False) -> dict[str, Any]:
    case_id, key, meta = entry["case_id"], entry["key"], entry["meta"]
    stage = "metrics"
    try:
        metrics = _metrics(mask, meta, plan)
        stage = "write"
        record = _write_outputs(case_id, key, mask, prob, meta, plan)
        if overlay:
            stage = "overlay"
            record["overlay"] = _overlay(case_id, key, mask, meta, plan)
        record.update(metrics=metrics, foreground_ml=dict(zip(plan.class_names, foreground_ml(mask, meta["affine"]))),
                      inference_seconds=seconds, slices=int(entry["slices"]))
        layout.write_record(plan.out, key, record)
    except Exception as exc:  # noqa: BLE001 - one bad case must not end the run
        return _failure(entry, stage, exc, plan)
    return result_row(entry, "done", record=record)


def _failure(entry: dict[str, Any], stage: str, exc: Exception, plan: Plan) -> dict[str, Any]:
    """A failed result whose one-line error names the file it is about."""
    if isinstance(exc, RaySegmentError):
        return result_row(entry, "failed", stage, str(exc))
    where = entry["meta"].get("mask_uri") if stage == "metrics" else storage.join(plan.out, "masks", entry["key"])
    return result_row(entry, "failed", stage, f"{where}: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}")


def result_row(entry: dict[str, Any], status: str, stage: str = "", error: str = "", record: dict | None = None) -> dict[str, Any]:
    """The result row of one case (``entry``: its ``case_id`` and ``key``) as a run collects it."""
    slices = int(record.get("slices", 0)) if record and status == "done" else 0
    return {"case_id": str(entry["case_id"]), "key": str(entry["key"]), "status": status, "stage": stage,
            "error": error, "slices": slices, "record": json.dumps(record) if record else ""}


def _metrics(mask: np.ndarray, meta: dict[str, Any], plan: Plan) -> list[dict[str, Any]] | None:
    """case_metrics against the case's ground truth on the input grid; None for unlabeled cases."""
    from raysegment.metrics import case_metrics
    from raysegment.preprocess import map_labels
    from raysegment.readers import read_mask

    if not meta.get("mask_uri"):
        return None
    labels = read_mask(meta["mask_uri"]).array[0]
    if meta.get("slice_index") is not None and labels.ndim == 3:
        labels = labels[..., meta["slice_index"]]
    if labels.shape != mask.shape[1:]:
        raise ScanReadError(meta["mask_uri"], f"mask shape {labels.shape} differs from image {mask.shape[1:]}")
    target = map_labels(labels, plan.preprocess_config.labels)
    rows = case_metrics(mask, target, meta["spacing"], list(plan.class_names))
    return [{k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in r.items()} for r in rows]


def _write_outputs(case_id: str, key: str, mask: np.ndarray, prob: np.ndarray, meta: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """Write the mask (and probability map); return the record naming them with size and checksum."""
    name = output_format(plan.format, meta["input_format"])
    writer = WRITERS.get(name)()
    reference = Reference(case_id=case_id, affine=np.asarray(meta["affine"]), spacing=tuple(meta["spacing"]),
                          metadata=meta["metadata"], source_uris=meta["source_uris"], class_names=list(plan.class_names))
    # One label map in the source's values (BraTS regions back to 1/2/4) unless one-hot is asked for.
    labels = None if plan.one_hot or not writer.takes_label_map else label_image(mask, plan.preprocess_config.labels)
    data = writer.encode(mask, reference) if labels is None else writer.encode_label_map(labels, reference)
    files = [_put(plan.out, "masks", key + writer.suffix, data, "mask")]
    if plan.save_probabilities:
        prob_writer = writer if writer.holds_floats else WRITERS.get("nifti" if prob.ndim == 4 else "tiff")()
        files.append(_put(plan.out, "probabilities", key + prob_writer.suffix, prob_writer.encode(prob, reference), "probabilities"))
    return {"case_id": case_id, "key": key, "model_id": plan.model_id, "format": name,
            "mask_encoding": "one_hot" if labels is None else "label_map", "files": files}


def _overlay(case_id: str, key: str, mask: np.ndarray, meta: dict[str, Any], plan: Plan) -> str:
    """Draw the case's first image file under its predicted mask into ``OUT/overlays/<key>.png``; returns that key.

    Shape:
        mask ``(K, *spatial)`` on the input grid, which is the file's own grid (or one slice of it).
    """
    from raysegment import plots
    from raysegment.readers import read_scan

    image = read_scan(meta["source_uris"][0]).array
    if meta.get("slice_index") is not None and image.ndim == mask.ndim + 1:
        image = image[..., meta["slice_index"]]
    relative = f"overlays/{key}.png"
    plots.overlay(image, None, mask > 0, storage.join(plan.out, relative), title=str(case_id), class_names=list(plan.class_names))
    return relative


def _put(out: str, folder: str, name: str, data: bytes, kind: str) -> dict[str, Any]:
    relative = f"{folder}/{name}"
    storage.write_bytes(storage.join(out, relative), data)
    return {"kind": kind, "key": relative, **layout.file_digest(data)}
