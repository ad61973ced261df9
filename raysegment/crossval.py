"""Cross-validation figures: each fold's model scored on its own held-out patients, then pooled.

Every train and val patient of a folds folder (:mod:`raysegment.train.folds`) was held out by
exactly one fold, so scoring each fold's model on its own patients gives one score per patient
from a model that never saw them: the pooled table is the cross-validation result (what published
K-fold figures report), and the per-fold figures show how much it swings between folds. The
ensemble is not scored here: every one of these patients trained some of its members.

Each fold goes through :func:`raysegment.evaluate.evaluate` unchanged (a manifest in which the
fold's patients are its ``val`` split), so its figures are exactly those ``evaluate`` reports for
that model. ``OUT`` holds each fold's own output in ``OUT/fold_K/`` and, pooled,

* ``case_metrics.parquet`` (and ``volume_metrics.parquet`` for slice datasets): every fold's
  rows with a ``fold`` column, ``split`` ``cv``;
* ``summary.parquet``/``summary.json`` (and ``volume_summary.parquet``): statistics per class over
  all folds; ``fold_summary.parquet`` (``volume_fold_summary.parquet``) the same per fold;
* ``overview.json``: per fold and pooled (``cv``), the Dice per patient and per case.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from raysegment import storage
from raysegment.errors import ConfigError

CV_SPLIT = "cv"


@dataclass
class CrossValResult:
    """Attributes:
        cases, volumes: pooled per case (per patient volume) and class metric rows, with ``fold``.
        summary, volume_summary: statistics per class over all folds (``split`` ``cv``).
        fold_summary, volume_fold_summary: the same per fold.
        overview: per fold and pooled, Dice per patient and per case (as ``evaluate``'s overview).
        folds: fold -> its :class:`raysegment.evaluate.EvalResult`.
    """

    out: str
    cases: pd.DataFrame
    summary: pd.DataFrame
    fold_summary: pd.DataFrame
    overview: pd.DataFrame
    volumes: pd.DataFrame = field(default_factory=pd.DataFrame)
    volume_summary: pd.DataFrame = field(default_factory=pd.DataFrame)
    volume_fold_summary: pd.DataFrame = field(default_factory=pd.DataFrame)
    folds: dict = field(default_factory=dict)


def held_out_manifest(df: pd.DataFrame, folds: dict, fold: int) -> pd.DataFrame:
    """``df`` with fold ``fold``'s patients as its ``val`` split and the other folds' as ``train`` (test rows unchanged).

    Raises:
        ConfigError: a patient of the folds is missing from ``df`` (another manifest than the folds were drawn from).
    """
    owner = {patient: entry["fold"] for entry in folds["fold"] for patient in entry["patients"]}
    missing = sorted(set(owner) - set(df["patient_id"]))
    if missing:
        raise ConfigError(f"{len(missing)} patients of the folds are not in the manifest (first: {missing[0]!r}); "
                          f"give the manifest the folds were drawn from ({folds.get('manifest')})")
    fold_of = df["patient_id"].map(owner)
    out = df.copy()
    pooled = fold_of.notna() & df["mask_uri"].notna()
    out.loc[pooled, "split"] = (fold_of[pooled] == fold).map({True: "val", False: "train"})
    return out


def evaluate_folds(folds_uri: str, manifest: str, out: str | None = None, postprocess: dict | None = None, workers: int = 1,
                   max_cases: int | None = None, address: str | None = None,
                   on_case: Callable[[int, int], None] | None = None) -> CrossValResult:
    """Score each fold's model of ``folds_uri`` on its held-out patients of ``manifest`` and pool the results.

    Args:
        out: output folder; default ``FOLDS/evaluation``.
        postprocess, workers, max_cases, address: as :func:`raysegment.evaluate.evaluate` (per fold).
        on_case: called with (cases scored, cases in all folds) as scores come in.

    Raises:
        ConfigError: not a folds folder, a fold without a model, or a manifest lacking the folds' patients.
    """
    from raysegment.evaluate import evaluate
    from raysegment.evaluate.run import metric_columns, split_overview
    from raysegment.manifest import read_manifest, write_manifest
    from raysegment.metrics import aggregate
    from raysegment.train.export import resolve_model
    from raysegment.train.folds import fold_dir, read_folds

    folds_uri = storage.normalize(folds_uri)
    folds = read_folds(folds_uri)
    out = storage.normalize(out or storage.join(folds_uri, "evaluation"))
    df = read_manifest(manifest)
    models, manifests = {}, {}
    for entry in folds["fold"]:  # every fold checked before any is scored
        k = entry["fold"]
        try:
            models[k] = resolve_model(fold_dir(folds_uri, k))
        except ConfigError:
            raise ConfigError(f"{folds_uri}: fold {k} has no model yet; train it with raysegment train --folds "
                              f"{folds['folds']} --fold {k}") from None
        manifests[k] = held_out_manifest(df, folds, k)
    sizes = {k: int(((m["split"] == "val") & m["mask_uri"].notna()).sum()) for k, m in manifests.items()}
    sizes = {k: min(n, max_cases) if max_cases else n for k, n in sizes.items()}
    results, cases, volumes = {}, [], []
    for k, model in models.items():
        uri = storage.join(out, f"fold_{k}", "manifest.parquet")
        write_manifest(manifests[k], uri)
        before = sum(sizes[j] for j in models if j < k)
        progress = None if on_case is None else (lambda done, _total, before=before: on_case(before + done, sum(sizes.values())))
        results[k] = evaluate(model, uri, "val", storage.join(out, f"fold_{k}"), postprocess=postprocess, workers=workers,
                              max_cases=max_cases, address=address, on_case=progress)
        cases.append(results[k].cases.assign(fold=k, split=CV_SPLIT))
        if len(results[k].volumes):
            volumes.append(results[k].volumes.assign(fold=k, split=CV_SPLIT))
    pooled = _fold_first(pd.concat(cases, ignore_index=True))
    pooled_volumes = _fold_first(pd.concat(volumes, ignore_index=True)) if volumes else pd.DataFrame()
    result = CrossValResult(out=out, cases=pooled, summary=aggregate(pooled, by=("split", "class"), metrics=metric_columns(pooled)),
                            fold_summary=aggregate(pooled, by=("fold", "class"), metrics=metric_columns(pooled)), overview=_overview(pooled, pooled_volumes, split_overview),
                            volumes=pooled_volumes, folds=results)
    tables = {"case_metrics": pooled, "summary": result.summary, "fold_summary": result.fold_summary}
    if len(pooled_volumes):
        result.volume_summary = aggregate(pooled_volumes, by=("split", "class"), metrics=metric_columns(pooled_volumes))
        result.volume_fold_summary = aggregate(pooled_volumes, by=("fold", "class"), metrics=metric_columns(pooled_volumes))
        tables.update(volume_metrics=pooled_volumes, volume_summary=result.volume_summary, volume_fold_summary=result.volume_fold_summary)
    for name, table in tables.items():
        storage.write_table(storage.join(out, f"{name}.parquet"), _arrow(table))
    storage.write_bytes(storage.join(out, "summary.json"), result.summary.to_json(orient="records", indent=2).encode())
    storage.write_bytes(storage.join(out, "overview.json"), result.overview.to_json(orient="records", indent=2).encode())
    return result


def _fold_first(df: pd.DataFrame) -> pd.DataFrame:
    return df[["fold", *[c for c in df.columns if c != "fold"]]]


def _overview(cases: pd.DataFrame, volumes: pd.DataFrame, split_overview) -> pd.DataFrame:
    """``evaluate``'s overview with one row per fold (``fold K``) and one for all of them (``cv``)."""
    def by_fold(df: pd.DataFrame) -> pd.DataFrame:
        return df.assign(split="fold " + df["fold"].astype(str)) if len(df) else df

    return pd.concat([split_overview(by_fold(cases), by_fold(volumes)), split_overview(cases, volumes)], ignore_index=True)


def _arrow(df: pd.DataFrame):
    import pyarrow as pa

    return pa.Table.from_pandas(df, preserve_index=False)
