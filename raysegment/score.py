"""``score(pred, truth)``: masks from any tool scored against reference masks, matched by case name.

This is how a user compares another tool's output (nnU-Net, a manual segmentation, an older
model) with raysegment's: the same metrics (:func:`~raysegment.metrics.case_metrics`), the same
summary (:func:`~raysegment.metrics.aggregate`) and the same file names as ``raysegment evaluate``.

Layout under ``OUT`` (when given)::

    OUT/case_metrics.parquet   one row per case and class
    OUT/summary.parquet        mean, std, median, percentiles per class and metric
    OUT/errors.parquet         one row per case that could not be scored
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa
from pydantic import TypeAdapter, ValidationError

from raysegment import storage
from raysegment.errors import ConfigError, ManifestError, RaySegmentError, ScanReadError
from raysegment.infer.layout import case_key
from raysegment.infer.run import EXIT_OK, EXIT_SOME_FAILED
from raysegment.metrics import CASE_METRICS, STATISTICS, aggregate, case_metrics
from raysegment.preprocess import LabelRule, map_labels
from raysegment.readers import read_mask

#: File endings of mask files in a folder; anything else there (JSON records, READMEs) is ignored.
MASK_ENDINGS = (".nii.gz", ".nii", ".tif", ".tiff", ".png", ".dcm")
#: Role markers dropped from the end of a case name, so ``a_seg.nii.gz`` matches ``a.png``.
ROLE_SUFFIXES = ("_mask", "_seg", "_label")
CASE_COLUMNS = ["case_id", "class", *CASE_METRICS, "distance_undefined", "pred_uri", "truth_uri"]
ERROR_COLUMNS = ["case_id", "pred_uri", "truth_uri", "error"]
DEFAULT_LABELS: dict[str, LabelRule] = {"foreground": "nonzero"}

_LABEL_RULES = TypeAdapter(dict[str, LabelRule])


@dataclass
class ScoreResult:
    """What :func:`score` found.

    Attributes:
        cases: one row per scored case and class, columns :data:`CASE_COLUMNS`.
        summary: :func:`~raysegment.metrics.aggregate` of ``cases`` by class (long format).
        errors: one row per case that could not be scored, columns :data:`ERROR_COLUMNS`.
        unmatched_pred: prediction URIs whose name matches no reference.
        unmatched_truth: reference case ids (the case name for a folder) with no prediction.
    """

    cases: pd.DataFrame
    summary: pd.DataFrame
    errors: pd.DataFrame
    unmatched_pred: list[str]
    unmatched_truth: list[str]

    @property
    def counts(self) -> dict[str, int]:
        """``matched`` (= ``scored`` + ``failed``), ``scored``, ``failed``, ``unmatched_pred``, ``unmatched_truth``."""
        scored, failed = int(self.cases["case_id"].nunique()), len(self.errors)
        return {"matched": scored + failed, "scored": scored, "failed": failed,
                "unmatched_pred": len(self.unmatched_pred), "unmatched_truth": len(self.unmatched_truth)}

    @property
    def exit_code(self) -> int:
        """0 when every matched case was scored, 3 when some failed (as ``raysegment infer``)."""
        return EXIT_SOME_FAILED if len(self.errors) else EXIT_OK


@dataclass(frozen=True)
class _Mask:
    """One mask file of either side, and the names a mask of the other side may match it by."""

    case_id: str
    uri: str
    names: frozenset[str]
    slice_index: int | None = None  # a manifest slice row whose mask file is a volume


def score(pred: str, truth: str, out: str | None = None, labels: Mapping[str, Any] | None = None, *, workers: int = 4) -> ScoreResult:
    """Score predicted masks against reference masks, case by case.

    Matching is by case name: the file name without its format ending (``.nii.gz``, ``.nii``,
    ``.tif``, ``.tiff``, ``.png``, ``.dcm``) and without one trailing ``_mask``, ``_seg`` or
    ``_label``, so ``BraTS_001_seg.nii.gz`` and ``BraTS_001.nii.gz`` are the same case. Against a
    manifest a prediction matches a case by its ``case_id`` (with the same suffix rule) or by
    ``case_key(case_id)``, the name ``raysegment infer`` gives its masks. Formats are whatever
    :func:`~raysegment.readers.read_mask` reads and may differ between the two sides: NIfTI, TIFF,
    PNG and DICOM. A DICOM SEG reads as a plain multi-frame DICOM, so a single-segment SEG of a
    single image works; a multi-segment SEG is an error row (``read_mask`` does not split segments).

    A case that cannot be scored (unreadable file, prediction shape different from the reference's,
    a name matching several files) becomes one row of ``errors`` and the others are still scored.

    Args:
        pred: folder (local, ``file://`` or ``s3://``) of predicted masks, or a manifest
            (``.parquet`` with ``case_id`` and ``mask_uri``) naming them.
        truth: folder of reference masks, or a raysegment manifest; its rows without a mask are skipped.
        out: folder for ``case_metrics.parquet``, ``summary.parquet`` and ``errors.parquet``; nothing is written when None.
        labels: class name -> raw label values or ``"nonzero"``, as ``PreprocessConfig.labels``
            (``{"WT": [1, 2, 4], "TC": [1, 4], "ET": [4]}``), applied to both sides; default one
            class ``foreground`` = nonzero.
        workers: cases read and scored at once (threads; reading from S3 is mostly waiting).

    Returns:
        A :class:`ScoreResult`; distances (HD95, ASSD) are in mm from the reference mask's spacing.

    Raises:
        ConfigError: invalid ``labels``, or no prediction matches any reference.
        ManifestError, StorageError: an unreadable manifest or unreachable folder.
    """
    rules = _label_rules(labels)
    predictions, references = _masks(pred, "pred"), _masks(truth, "truth")
    pairs, errors, unmatched_pred, unmatched_truth = _match(predictions, references)
    if not pairs and not errors:
        raise ConfigError(f"none of the {len(predictions)} predictions in {pred} matches one of the {len(references)} references in {truth} "
                          f"by case name (first prediction {predictions[0].case_id!r}, first reference {references[0].case_id!r})")
    with ThreadPoolExecutor(max(1, workers)) as pool:
        outcomes = list(pool.map(lambda pair: _score_case(*pair, rules), pairs))
    rows = [row for outcome in outcomes if isinstance(outcome, list) for row in outcome]
    errors += [outcome for outcome in outcomes if isinstance(outcome, dict)]
    cases = pd.DataFrame(rows, columns=CASE_COLUMNS).astype({m: float for m in CASE_METRICS} | {"distance_undefined": bool})
    order = {name: k for k, name in enumerate(rules)}
    summary = aggregate(cases, by=("class",)) if rows else pd.DataFrame(columns=["class", "metric", *STATISTICS])
    summary = summary.sort_values("class", key=lambda c: c.map(order), kind="stable", ignore_index=True)
    errors_df = pd.DataFrame(sorted(errors, key=lambda e: (e["case_id"], e["pred_uri"])), columns=ERROR_COLUMNS).astype("string")
    result = ScoreResult(cases, summary, errors_df, unmatched_pred, unmatched_truth)
    if out is not None:
        for name, df in (("case_metrics", cases), ("summary", summary), ("errors", errors_df)):
            storage.write_table(storage.join(out, f"{name}.parquet"), pa.Table.from_pandas(df, preserve_index=False))
    return result


def case_name(name: str) -> str:
    """``name`` (a file name or case id) without its mask format ending and one trailing role suffix."""
    lower = name.lower()
    for ending in MASK_ENDINGS:
        if lower.endswith(ending):
            name, lower = name[: -len(ending)], lower[: -len(ending)]
            break
    for suffix in ROLE_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def _label_rules(labels: Mapping[str, Any] | None) -> dict[str, LabelRule]:
    if labels is None:
        return dict(DEFAULT_LABELS)
    try:
        rules = _LABEL_RULES.validate_python(dict(labels))
    except (ValidationError, TypeError, ValueError) as exc:
        raise ConfigError(f"labels: expected class name -> list of label values or 'nonzero', got {labels!r}") from exc
    if not rules:
        raise ConfigError("labels: name at least one class")
    return rules


def _masks(uri: str, side: str) -> list[_Mask]:
    """The masks of one side: the rows of a manifest, or the mask files directly in a folder."""
    if storage.basename(uri).lower().endswith(".parquet"):
        return _manifest_masks(uri, side)
    files = [f for f in storage.list_files(uri, recursive=False) if storage.basename(f).lower().endswith(MASK_ENDINGS)]
    if not files:
        raise ConfigError(f"{side} {uri}: no mask files ({', '.join(MASK_ENDINGS)}) in this folder")
    return [_Mask(case_name(storage.basename(f)), f, frozenset({case_name(storage.basename(f))})) for f in files]


def _manifest_masks(uri: str, side: str) -> list[_Mask]:
    try:
        df = storage.read_table(uri).to_pandas()
    except pa.ArrowInvalid as exc:
        raise ManifestError(f"{uri}: not a Parquet file ({exc})") from exc
    missing = [c for c in ("case_id", "mask_uri") if c not in df.columns]
    if missing:
        raise ManifestError(f"{uri}: missing columns {missing}")
    df = df[df["mask_uri"].notna()]
    if df.empty:
        raise ConfigError(f"{side} {uri}: no rows with a mask_uri")
    masks = []
    for row in df.to_dict(orient="records"):
        case_id = str(row["case_id"])
        # Slice rows of a volume file are scored on their slice, as training cuts them (manifest docs).
        is_slice = row.get("level") == "slice" and pd.notna(row.get("slice_index"))
        masks.append(_Mask(case_id, str(row["mask_uri"]), frozenset({case_name(case_id), case_key(case_id)}),
                           int(row["slice_index"]) if is_slice else None))
    return masks


def _match(predictions: list[_Mask], references: list[_Mask]):
    """Pairs ``(case_id, pred, truth)`` to score, error rows for ambiguous names, and the unmatched."""
    by_name: dict[str, set[str]] = defaultdict(set)
    truth_files: dict[str, list[_Mask]] = defaultdict(list)
    for ref in references:
        truth_files[ref.case_id].append(ref)
        for name in ref.names:
            by_name[name].add(ref.case_id)
    pred_files: dict[str, list[_Mask]] = defaultdict(list)
    errors, unmatched_pred = [], []
    for mask in predictions:
        hits = set().union(*(by_name.get(name, set()) for name in mask.names))
        if len(hits) == 1:
            pred_files[hits.pop()].append(mask)
        elif hits:
            errors.append(_error(mask.case_id, mask.uri, "", f"{mask.uri}: name matches several references: {', '.join(sorted(hits))}"))
        else:
            unmatched_pred.append(mask.uri)
    pairs, unmatched_truth = [], []
    for case_id in sorted(truth_files):
        preds, refs = pred_files.get(case_id, []), truth_files[case_id]
        if not preds:
            unmatched_truth.append(case_id)
        elif len(preds) > 1 or len(refs) > 1:
            # Picking one would score an arbitrary file: the user must say which.
            files = [m.uri for m in preds + refs]
            errors.append(_error(case_id, preds[0].uri, refs[0].uri, f"case {case_id}: several files match, {', '.join(files)}"))
        else:
            pairs.append((case_id, preds[0], refs[0]))
    return pairs, errors, sorted(unmatched_pred), unmatched_truth


def _score_case(case_id: str, pred: _Mask, truth: _Mask, rules: dict[str, LabelRule]) -> list[dict[str, Any]] | dict[str, str]:
    """Metric rows of one case, or its error row: one bad case never stops the others."""
    try:
        reference, predicted = read_mask(truth.uri), read_mask(pred.uri)
        if truth.slice_index is not None and reference.is_volume and not predicted.is_volume:
            reference = reference.slice(truth.slice_index)
        if predicted.spatial_shape != reference.spatial_shape:
            raise ScanReadError(pred.uri, f"prediction shape {predicted.spatial_shape} differs from the reference's {reference.spatial_shape} ({truth.uri})")
        rows = case_metrics(map_labels(predicted.array[0], rules), map_labels(reference.array[0], rules), reference.spacing, class_names=list(rules))
    except (RaySegmentError, ValueError, IndexError) as exc:
        message = str(exc) if isinstance(exc, RaySegmentError) else f"{pred.uri}: {' '.join(str(exc).split())}"
        return _error(case_id, pred.uri, truth.uri, message)
    return [{"case_id": case_id, **row, "pred_uri": pred.uri, "truth_uri": truth.uri} for row in rows]


def _error(case_id: str, pred_uri: str, truth_uri: str, message: str) -> dict[str, str]:
    return {"case_id": case_id, "pred_uri": pred_uri, "truth_uri": truth_uri, "error": message}
