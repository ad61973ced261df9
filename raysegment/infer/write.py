"""The write stage: one predicted case -> mask (and probabilities) on storage, metrics, then its record.

The record is written last and only after every file it names is complete, so a run killed at any
point leaves each case either complete or redoable (see :mod:`raysegment.infer.layout`).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from raysegment import storage
from raysegment.errors import RaySegmentError, ScanReadError
from raysegment.infer import layout
from raysegment.infer.plan import Plan
from raysegment.infer.postprocess import binarize, foreground_ml, to_input_grid
from raysegment.writers import WRITERS, Reference, output_format


def write_case(row: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """Finish one case row from the predictor.

    Returns:
        A small result row: ``case_id``, ``key``, ``status`` (``done``, ``skipped``, ``failed``),
        ``stage``, ``error``, ``slices``, ``record`` (JSON, empty for failures).
    """
    case_id, status = str(row["case_id"]), str(row["status"])
    meta = json.loads(row["meta"])
    if status == "skipped":
        return _result(row, "skipped", record=meta["record"])
    if status != "ok":
        return _result(row, "failed", stage=str(row["stage"]), error=str(row["error"]))
    stage = "postprocess"
    try:
        prob = to_input_grid(np.asarray(row["prob"]), meta["steps"], meta["orientation"], volume=len(meta["spacing"]) == 3)
        mask = binarize(prob, plan.threshold, plan.largest_component)
        stage = "metrics"
        metrics = _metrics(mask, meta, plan)
        stage = "write"
        record = _write_outputs(case_id, str(row["key"]), mask, prob, meta, plan)
        record.update(metrics=metrics, foreground_ml=dict(zip(plan.class_names, foreground_ml(mask, meta["affine"]))),
                      inference_seconds=float(row["predict_seconds"]), slices=len(row["prob"]))
        layout.write_record(plan.out, str(row["key"]), record)
    except RaySegmentError as exc:
        return _result(row, "failed", stage=stage, error=str(exc))
    except Exception as exc:  # noqa: BLE001 - one bad case must not end the run
        where = meta.get("mask_uri") if stage == "metrics" else storage.join(plan.out, "masks", str(row["key"]))
        return _result(row, "failed", stage=stage, error=f"{where}: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
    return _result(row, "done", record=record)


def _result(row: dict[str, Any], status: str, stage: str = "", error: str = "", record: dict | None = None) -> dict[str, Any]:
    slices = int(record.get("slices", 0)) if record and status == "done" else 0
    return {"case_id": str(row["case_id"]), "key": str(row["key"]), "status": status, "stage": stage,
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
    files = [_put(plan.out, "masks", key + writer.suffix, writer.encode(mask, reference), "mask")]
    if plan.save_probabilities:
        prob_writer = writer if writer.holds_floats else WRITERS.get("nifti" if prob.ndim == 4 else "tiff")()
        files.append(_put(plan.out, "probabilities", key + prob_writer.suffix, prob_writer.encode(prob, reference), "probabilities"))
    return {"case_id": case_id, "key": key, "model_id": plan.model_id, "format": name, "files": files}


def _put(out: str, folder: str, name: str, data: bytes, kind: str) -> dict[str, Any]:
    relative = f"{folder}/{name}"
    storage.write_bytes(storage.join(out, relative), data)
    return {"kind": kind, "key": relative, **layout.file_digest(data)}
