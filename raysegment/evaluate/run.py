"""``evaluate(model, manifest, splits, out) -> EvalResult``: score a trained model on manifest splits.

Cases are scored in parallel Ray Data tasks (each actor loads the model once); the driver only
collects the small per-class metric rows, then writes

* ``OUT/case_metrics.parquet``: one row per case and class (``raysegment.metrics.case_metrics``),
  with ``loss``, the case's training loss (:mod:`raysegment.evaluate.predict`), when the
  checkpoint records its loss;
* ``OUT/summary.parquet`` and ``OUT/summary.json``: mean, std, median and percentiles per split,
  class and metric (``raysegment.metrics.aggregate``), the loss first;
* for slice datasets (LGG), ``OUT/volume_metrics.parquet`` and ``OUT/volume_summary.parquet``: the
  same per patient volume, its slices stacked and scored in 3D;
* ``OUT/overlays/<split>_<best|median|worst>.png``: image, ground truth and prediction, and
  ``<split>_empty.png``: a case without lesion, as the model predicts it (see :func:`empty_case`).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from raysegment import storage
from raysegment.errors import ConfigError
from raysegment.evaluate.predict import CaseScorer, VolumeScorer
from raysegment.manifest import read_manifest
from raysegment.metrics import CASE_METRICS, aggregate
from raysegment.models.checkpoint import read_metadata
from raysegment.runtime import init_ray
from raysegment.train.export import resolve_model

#: The overlay of a case without reference foreground, beside the ranked ones.
EMPTY = "empty"
_SLICE_COLUMNS = ["case_id", "level", "image_uris", "channels", "mask_uri", "slice_index", "volume_id", "split", "format"]


@dataclass
class EvalResult:
    """Attributes:
        cases: per case and class metric rows.
        summary: long table ``split, class, metric, mean, std, median, ...``.
        figures: overlay figure URIs by ``"<split>_<rank>"``.
        overview: per split, per-case mean Dice, share of empty cases and (slice datasets) per-patient Dice.
        volumes, volume_summary: the same per stacked volume, for slice datasets (else empty).
        reported_metrics: the metrics the model's job is judged by (its ``metrics:``, a seed
            report's), in order; empty when the job names none.
    """

    out: str
    cases: pd.DataFrame
    summary: pd.DataFrame
    overview: pd.DataFrame = field(default_factory=pd.DataFrame)
    figures: dict[str, str] = field(default_factory=dict)
    volumes: pd.DataFrame = field(default_factory=pd.DataFrame)
    volume_summary: pd.DataFrame = field(default_factory=pd.DataFrame)
    reported_metrics: list[str] = field(default_factory=list)

    def mean(self, metric: str = "dice", split: str | None = None) -> float:
        """Mean of a metric over cases and classes (of one split, when given)."""
        rows = self.cases if split is None else self.cases[self.cases["split"] == split]
        return float(rows[metric].mean())


def evaluate(model: str, manifest: str, splits: list[str] | str = "test", out: str | None = None,
             postprocess: dict | None = None, workers: int = 1, max_cases: int | None = None,
             address: str | None = None, on_case: Callable[[int, int], None] | None = None) -> EvalResult:
    """Score ``model`` (checkpoint, run folder or a run's epoch checkpoint) on the labeled cases of ``splits``.

    Args:
        postprocess: overrides of the checkpoint's post-processing, e.g. ``{"largest_component": False}``.
        workers: scoring actors in parallel.
        max_cases: at most this many cases per split (quick checks).
        on_case: called on the driver with (cases scored, cases in all) as scores come in (progress).
    """
    import ray.data

    model_uri = resolve_model(model)
    splits = [s.strip() for s in splits.split(",")] if isinstance(splits, str) else list(splits)
    df = read_manifest(manifest)
    picked = []
    for split in splits:
        part = df[(df["split"] == split) & df["mask_uri"].notna()]
        if not len(part):
            raise ConfigError(f"{manifest}: no labeled cases in split {split!r}")
        picked.append(part.iloc[:max_cases] if max_cases else part)
    rows = pd.concat(picked, ignore_index=True)
    init_ray(address)
    ray.data.DataContext.get_current().enable_progress_bars = False
    from raysegment.train.data import plain_row

    # Slices of a known volume are scored per slice and per stacked volume in one pass.
    grouped = (rows["level"] == "slice") & rows["volume_id"].notna()
    parts, seen = [], set()

    def collect(ds) -> list[dict]:
        out = []
        for row in ds.iter_rows():  # streamed, so each case is reported as it is scored
            out.append(row)
            if on_case is not None and row.get("level", "case") == "case" and (row["split"], row["case_id"]) not in seen:
                seen.add((row["split"], row["case_id"]))
                on_case(len(seen), len(rows))
        return out

    if (~grouped).any():
        single = rows[~grouped]
        ds = ray.data.from_items([plain_row(r) for r in single.to_dict(orient="records")],
                                 override_num_blocks=max(1, min(len(single), 4 * workers)))
        parts += collect(ds.flat_map(CaseScorer, fn_constructor_args=(model_uri, postprocess),
                                     compute=ray.data.ActorPoolStrategy(size=workers)))
    if grouped.any():
        # The driver holds the rows already: grouping them here costs nothing, where Ray Data's
        # groupby would hash-shuffle them through 200 partitions and start aggregator actors.
        groups = [{"rows": [plain_row(r) for r in part.to_dict(orient="records")]}
                  for _, part in rows[grouped][_SLICE_COLUMNS].groupby("volume_id", sort=False)]
        ds = ray.data.from_items(groups, override_num_blocks=max(1, min(len(groups), 4 * workers)))
        parts += collect(ds.flat_map(VolumeScorer, fn_constructor_args=(model_uri, postprocess),
                                     compute=ray.data.ActorPoolStrategy(size=workers)))
    scored = pd.DataFrame(parts)
    levels = scored["level"] if "level" in scored else pd.Series("case", index=scored.index)
    cases, volumes = scored[levels == "case"].drop(columns=["level", "slices"], errors="ignore"), scored[levels == "volume"]
    metadata = read_metadata(model_uri)
    class_order = {name: k for k, name in enumerate(metadata.get("class_names") or [])}

    def order(df: pd.DataFrame) -> pd.DataFrame:
        return df.sort_values(["split", "case_id", "class"], key=lambda c: c.map(class_order) if c.name == "class" else c,
                              ignore_index=True)

    cases = order(cases.drop(columns=["volume_id"]) if "volume_id" in cases else cases)
    summary = aggregate(cases, by=("split", "class"), metrics=metric_columns(cases))
    out = storage.normalize(out or storage.join(model_uri, "evaluation"))
    _write_parquet(cases, storage.join(out, "case_metrics.parquet"))
    _write_parquet(summary, storage.join(out, "summary.parquet"))
    storage.write_bytes(storage.join(out, "summary.json"), summary.to_json(orient="records", indent=2).encode())
    volume_summary = pd.DataFrame()
    if len(volumes):
        volumes = order(volumes.drop(columns=["level", "case_id"]).rename(columns={"volume_id": "case_id"}))
        volume_summary = aggregate(volumes, by=("split", "class"), metrics=metric_columns(volumes))
        _write_parquet(volumes, storage.join(out, "volume_metrics.parquet"))
        _write_parquet(volume_summary, storage.join(out, "volume_summary.parquet"))
    figures = overlays(VolumeScorer(model_uri, postprocess), rows, volumes if len(volumes) else cases, out, cases)
    overview = split_overview(cases, volumes)
    storage.write_bytes(storage.join(out, "overview.json"), overview.to_json(orient="records", indent=2).encode())
    return EvalResult(out=out, cases=cases, summary=summary, overview=overview, figures=figures, volumes=volumes,
                      volume_summary=volume_summary, reported_metrics=list(metadata.get("reported_metrics") or []))


def metric_columns(scored: pd.DataFrame) -> list[str]:
    """The columns summarised: the loss (when the checkpoint records one), then every case metric."""
    return [m for m in ("loss", *CASE_METRICS) if m in scored]


def split_overview(cases: pd.DataFrame, volumes: pd.DataFrame) -> pd.DataFrame:
    """One row per split: the per-case mean Dice beside the per-patient one, the share of empty
    cases and the mean loss per case (when the checkpoint records its loss).

    A slice without foreground predicted empty scores Dice 1: on slice datasets most slices are
    empty, so the per-slice mean alone looks far better than what a patient gets.
    """
    rows = []
    for split, part in cases.groupby("split", sort=False):
        per_case = part.groupby("case_id").agg(dice=("dice", "mean"), truth=("volume_true", "sum"),
                                               **({"loss": ("loss", "first")} if "loss" in part else {}))
        row = {"split": split}
        if len(volumes):
            per_volume = volumes[volumes["split"] == split].groupby("case_id")["dice"].mean()
            row.update(patients=len(per_volume), patient_dice=float(per_volume.mean()), patient_median=float(per_volume.median()))
        row.update(cases=len(per_case), empty_share=float((per_case["truth"] == 0).mean()), case_dice=float(per_case["dice"].mean()))
        if "loss" in per_case:
            row["loss"] = float(per_case["loss"].mean())
        rows.append(row)
    return pd.DataFrame(rows)


def _write_parquet(df: pd.DataFrame, uri: str) -> None:
    buffer = io.BytesIO()
    df.to_parquet(buffer, index=False)
    storage.write_bytes(uri, buffer.getvalue())


def ranked_cases(cases: pd.DataFrame) -> dict[str, str]:
    """Best, median and worst case of one split by class-mean Dice.

    Cases with reference foreground are ranked when there are any: an empty slice predicted empty
    scores Dice 1 and would otherwise always be "best".
    """
    per_case = cases.groupby("case_id").agg(dice=("dice", "mean"), truth=("volume_true", "sum"))
    with_truth = per_case[per_case["truth"] > 0]
    ranked = (with_truth if len(with_truth) else per_case).sort_values("dice", ascending=False)
    return {"best": ranked.index[0], "median": ranked.index[len(ranked) // 2], "worst": ranked.index[-1]}


def empty_case(cases: pd.DataFrame) -> str | None:
    """A case of one split without reference foreground, None when every case has some.

    The one with the most predicted foreground (the first by id when none has any): what the model
    does where there is nothing to find, right or wrong, which the ranked cases never show.
    """
    per_case = cases.groupby("case_id").agg(truth=("volume_true", "sum"), predicted=("volume_pred", "sum"))
    empty = per_case[per_case["truth"] == 0]
    return str(empty.sort_values("predicted", ascending=False, kind="stable").index[0]) if len(empty) else None


def _prediction(scorer: VolumeScorer, rows: pd.DataFrame, case_id: str):
    """What to draw for ``case_id`` and the slice to show (None: the overlay picks).

    A patient of a slice dataset is its stacked volume; one of its slices is that slice of the
    volume, post-processed with the rest of it as it was scored; any other case is predicted alone.
    """
    from raysegment.train.data import plain_row

    row = rows[rows["case_id"] == case_id]
    volume_id = row.iloc[0]["volume_id"] if len(row) and row.iloc[0]["level"] == "slice" else case_id
    slices = rows[(rows["level"] == "slice") & (rows["volume_id"] == volume_id)]
    if not len(slices):
        return scorer.predict(plain_row(row.iloc[0].to_dict())), None
    ordered, volume = scorer.predict_volume([plain_row(r) for r in slices.to_dict(orient="records")])
    ids = [r["case_id"] for r in ordered]
    return volume, ids.index(case_id) if case_id in ids else None


def overlays(scorer: VolumeScorer, rows: pd.DataFrame, scored: pd.DataFrame, out: str,
             cases: pd.DataFrame | None = None) -> dict[str, str]:
    """Write the best/median/worst overlay of every split, and one of a case without lesion where a split has one.

    ``scored`` are the units that were ranked: cases, or the patient volumes of a slice dataset,
    whose empty example may also be a slice from ``cases`` when every patient has a lesion.
    Volumes show their slice with most truth.
    """
    from raysegment import plots

    figures = {}
    for split, part in scored.groupby("split"):
        picks = {rank: (case_id, part) for rank, case_id in ranked_cases(part).items()}
        slices = cases[cases["split"] == split] if cases is not None else part
        for table in (part, slices):
            empty = empty_case(table)
            if empty is not None:
                picks[EMPTY] = (empty, table)
                break
        for rank, (case_id, table) in picks.items():
            case, k = _prediction(scorer, rows, case_id)
            dice = float(table[table["case_id"] == case_id]["dice"].mean())
            label = "no lesion" if rank == EMPTY else rank
            uri = storage.join(out, "overlays", f"{split}_{rank}.png")
            figures[f"{split}_{rank}"] = plots.overlay(case.image, case.truth, case.prediction, uri,
                                                       title=f"{split} {label}: {case_id} (Dice {dice:.3f})",
                                                       class_names=scorer.class_names, slice_index=k)
    storage.write_bytes(storage.join(out, "overlays", "index.json"), json.dumps(figures, indent=2).encode())
    return figures
