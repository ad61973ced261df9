"""``evaluate(model, manifest, splits, out) -> EvalResult``: score a trained model on manifest splits.

Cases are scored in parallel Ray Data tasks (each actor loads the model once); the driver only
collects the small per-class metric rows, then writes

* ``OUT/case_metrics.parquet``: one row per case and class (``raysegment.metrics.case_metrics``);
* ``OUT/summary.parquet`` and ``OUT/summary.json``: mean, std, median and percentiles per split,
  class and metric (``raysegment.metrics.aggregate``);
* for slice datasets (LGG), ``OUT/volume_metrics.parquet`` and ``OUT/volume_summary.parquet``: the
  same per patient volume, its slices stacked and scored in 3D;
* ``OUT/overlays/<split>_<best|median|worst>.png``: image, ground truth and prediction.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from raysegment import storage
from raysegment.errors import ConfigError
from raysegment.evaluate.predict import CaseScorer, VolumeScorer
from raysegment.manifest import read_manifest
from raysegment.metrics import aggregate
from raysegment.models.checkpoint import read_metadata
from raysegment.runtime import init_ray

RANKS = ("best", "median", "worst")
_SLICE_COLUMNS = ["case_id", "level", "image_uris", "channels", "mask_uri", "slice_index", "volume_id", "split", "format"]


@dataclass
class EvalResult:
    """Attributes:
        cases: per case and class metric rows.
        summary: long table ``split, class, metric, mean, std, median, ...``.
        figures: overlay figure URIs by ``"<split>_<rank>"``.
        volumes, volume_summary: the same per stacked volume, for slice datasets (else empty).
    """

    out: str
    cases: pd.DataFrame
    summary: pd.DataFrame
    figures: dict[str, str] = field(default_factory=dict)
    volumes: pd.DataFrame = field(default_factory=pd.DataFrame)
    volume_summary: pd.DataFrame = field(default_factory=pd.DataFrame)

    def mean(self, metric: str = "dice", split: str | None = None) -> float:
        """Mean of a metric over cases and classes (of one split, when given)."""
        rows = self.cases if split is None else self.cases[self.cases["split"] == split]
        return float(rows[metric].mean())


def resolve_model(uri: str) -> str:
    """A checkpoint directory itself, or the ``best/`` checkpoint of a training run folder."""
    from raysegment.models.checkpoint import SPEC_FILE

    uri = storage.normalize(uri)
    for candidate in (uri, storage.join(uri, "best")):
        if storage.exists(storage.join(candidate, SPEC_FILE)):
            return candidate
    raise ConfigError(f"{uri}: neither a model checkpoint ({SPEC_FILE}) nor a training run with best/{SPEC_FILE}")


def evaluate(model: str, manifest: str, splits: list[str] | str = "test", out: str | None = None,
             threshold: float = 0.5, workers: int = 1, max_cases: int | None = None,
             address: str | None = None) -> EvalResult:
    """Score ``model`` (checkpoint or run folder) on the labeled cases of ``splits``.

    Args:
        workers: scoring actors in parallel.
        max_cases: at most this many cases per split (quick checks).
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
    parts = []
    if (~grouped).any():
        single = rows[~grouped]
        ds = ray.data.from_items([plain_row(r) for r in single.to_dict(orient="records")],
                                 override_num_blocks=max(1, min(len(single), 4 * workers)))
        parts += ds.flat_map(CaseScorer, fn_constructor_args=(model_uri, threshold),
                             compute=ray.data.ActorPoolStrategy(size=workers)).take_all()
    if grouped.any():
        # The driver holds the rows already: grouping them here costs nothing, where Ray Data's
        # groupby would hash-shuffle them through 200 partitions and start aggregator actors.
        groups = [{"rows": [plain_row(r) for r in part.to_dict(orient="records")]}
                  for _, part in rows[grouped][_SLICE_COLUMNS].groupby("volume_id", sort=False)]
        ds = ray.data.from_items(groups, override_num_blocks=max(1, min(len(groups), 4 * workers)))
        parts += ds.flat_map(VolumeScorer, fn_constructor_args=(model_uri, threshold),
                             compute=ray.data.ActorPoolStrategy(size=workers)).take_all()
    scored = pd.DataFrame(parts)
    levels = scored["level"] if "level" in scored else pd.Series("case", index=scored.index)
    cases, volumes = scored[levels == "case"].drop(columns=["level", "slices"], errors="ignore"), scored[levels == "volume"]
    class_order = {name: k for k, name in enumerate(read_metadata(model_uri).get("class_names") or [])}

    def order(df: pd.DataFrame) -> pd.DataFrame:
        return df.sort_values(["split", "case_id", "class"], key=lambda c: c.map(class_order) if c.name == "class" else c,
                              ignore_index=True)

    cases = order(cases.drop(columns=["volume_id"]) if "volume_id" in cases else cases)
    summary = aggregate(cases, by=("split", "class"))
    out = storage.normalize(out or storage.join(model_uri, "evaluation"))
    _write_parquet(cases, storage.join(out, "case_metrics.parquet"))
    _write_parquet(summary, storage.join(out, "summary.parquet"))
    storage.write_bytes(storage.join(out, "summary.json"), summary.to_json(orient="records", indent=2).encode())
    volume_summary = pd.DataFrame()
    if len(volumes):
        volumes = order(volumes.drop(columns=["level", "case_id"]).rename(columns={"volume_id": "case_id"}))
        volume_summary = aggregate(volumes, by=("split", "class"))
        _write_parquet(volumes, storage.join(out, "volume_metrics.parquet"))
        _write_parquet(volume_summary, storage.join(out, "volume_summary.parquet"))
    figures = overlays(CaseScorer(model_uri, threshold), rows, cases, out)
    return EvalResult(out=out, cases=cases, summary=summary, figures=figures, volumes=volumes, volume_summary=volume_summary)


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


def overlays(scorer: CaseScorer, rows: pd.DataFrame, cases: pd.DataFrame, out: str) -> dict[str, str]:
    """Write the best/median/worst overlay of every split; volumes show their slice with most truth."""
    from raysegment import plots
    from raysegment.train.data import plain_row

    figures = {}
    for split, part in cases.groupby("split"):
        for rank, case_id in ranked_cases(part).items():
            row = plain_row(rows[rows["case_id"] == case_id].iloc[0].to_dict())
            case = scorer.predict(row)
            image, truth, pred = case.image, case.truth, case.prediction
            if truth.ndim == 4:  # a volume: the slice with the most reference (else predicted) foreground
                weight = truth.sum(axis=(0, 1, 2)) if truth.any() else pred.sum(axis=(0, 1, 2))
                k = int(np.argmax(weight))
                image, truth, pred = image[..., k], truth[..., k], pred[..., k]
                case_id = f"{case_id} slice {k}"
            dice = float(part[part["case_id"] == row["case_id"]]["dice"].mean())
            uri = storage.join(out, "overlays", f"{split}_{rank}.png")
            figures[f"{split}_{rank}"] = plots.overlay(image, truth, pred, uri, title=f"{split} {rank}: {case_id} (Dice {dice:.3f})",
                                                       class_names=scorer.class_names)
    storage.write_bytes(storage.join(out, "overlays", "index.json"), json.dumps(figures, indent=2).encode())
    return figures
