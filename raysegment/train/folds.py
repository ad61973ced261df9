"""Cross-validation: K patient-grouped folds, each its own Ray Train run, and the ensemble of their models.

A single validation split of a few patients is a noisy judge (see the README's LGG figures); K
folds score every non-test patient once, with a model that never saw them, and leave K models
whose average predicts better than any one of them. Folds are drawn over **patients** (a
patient's slices and volumes always travel together, or neighbouring slices leak into the fold
that scores them), seeded, and stratified by whether the patient has any foreground
(:func:`raysegment.splits.assign_folds`), over the manifest's ``train`` and ``val`` rows only: the
``test`` split stays untouched for a final figure no fold chose anything on.

Layout of a folds folder ``OUT``::

    OUT/folds.json                 folds, seed, source manifest; per fold its patients, run and model
    OUT/cv_summary.json            per fold the validation figures of its model; their mean and std
    OUT/manifests/fold_K.parquet   what fold K trains on: split ``val`` = its patients, ``train`` = the others'
    OUT/fold_K/                    fold K's run folder (``raysegment train``'s layout)
    OUT/ensemble/model.json        the folds' models averaged (:mod:`raysegment.models.ensemble`), once all have one

Every fold is an ordinary :func:`raysegment.train.train` run, so it resumes, exports and is scored
like any run. The folds folder stands for its ensemble wherever a model is taken
(:func:`raysegment.train.export.resolve_model`); ``evaluate`` scores it by cross-validation
(:mod:`raysegment.crossval`).
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from raysegment import storage
from raysegment.errors import ConfigError
from raysegment.train.config import TrainConfig, apply_overrides

FOLDS_FILE = "folds.json"
SUMMARY_FILE = "cv_summary.json"
MANIFESTS_DIR = "manifests"
ENSEMBLE_DIR = "ensemble"
#: The splits folds are drawn from; ``test`` (and ``unlabeled``) rows keep their split in every fold.
POOLED_SPLITS = ("train", "val")


def fold_dir(out: str, fold: int) -> str:
    return storage.join(out, f"fold_{fold}")


def fold_manifest_uri(out: str, fold: int) -> str:
    return storage.join(out, MANIFESTS_DIR, f"fold_{fold}.parquet")


def is_folds_folder(uri: str) -> bool:
    return storage.exists(storage.join(uri, FOLDS_FILE))


def read_folds(uri: str) -> dict:
    """The parsed ``folds.json`` of a folds folder; a ConfigError naming ``uri`` when it is none."""
    try:
        return json.loads(storage.read_bytes(storage.join(uri, FOLDS_FILE)))
    except storage.MissingObjectError:
        raise ConfigError(f"{uri}: no {FOLDS_FILE}; not a cross-validation folder (raysegment train --folds K)") from None


def assign_cv_folds(df: pd.DataFrame, folds: int, seed: int = 0) -> pd.Series:
    """Fold (0 .. folds-1) per row of the ``train``/``val`` rows, assigned per patient; NaN for the others.

    Raises:
        ConfigError: fewer patients than folds, or a volume whose slices name several patients
            (grouping by patient would then split it).
    """
    from raysegment.splits import assign_folds

    pooled = df["split"].isin(POOLED_SPLITS)
    rows = df[pooled]
    if "volume_id" in rows:
        owners = rows.dropna(subset=["volume_id"]).groupby("volume_id")["patient_id"].nunique()
        if (owners > 1).any():
            raise ConfigError(f"volume {owners[owners > 1].index[0]!r} has slices of several patients; folds keep a patient's "
                              "slices together and cannot split it")
    if folds < 2:
        raise ConfigError(f"--folds {folds}: cross-validation needs at least 2 folds")
    try:
        return assign_folds(rows, folds=folds, seed=seed).reindex(df.index)
    except ValueError as exc:
        raise ConfigError(f"{exc} (train and val patients; the test split takes no part)") from None


def fold_manifest(df: pd.DataFrame, fold_of: pd.Series, fold: int) -> pd.DataFrame:
    """The manifest fold ``fold`` trains on: its patients ``val``, the other folds' ``train``, the rest unchanged."""
    out = df.copy()
    pooled = fold_of.notna()
    out.loc[pooled, "split"] = np.where(fold_of[pooled] == fold, "val", "train")
    return out


def fold_patients(df: pd.DataFrame, fold_of: pd.Series, folds: int) -> list[list[str]]:
    """Sorted patient ids of each fold."""
    return [sorted(df.loc[fold_of == k, "patient_id"].unique().tolist()) for k in range(folds)]


@dataclass
class FoldsResult:
    """What ``train_folds`` left in ``out``.

    Attributes:
        runs: fold -> :class:`raysegment.train.RunResult` of the folds trained by this call.
        folds: the content of ``folds.json``.
        summary: one row per fold with a model: its validation figures.
        cv_summary: the content of ``cv_summary.json``: those rows, their mean and std.
        ensemble_uri: ``OUT/ensemble`` once every fold has a model, else None.
    """

    out: str
    runs: dict = field(default_factory=dict)
    folds: dict = field(default_factory=dict)
    summary: pd.DataFrame = field(default_factory=pd.DataFrame)
    cv_summary: dict = field(default_factory=dict)
    ensemble_uri: str | None = None


class _FoldConsole:
    """A console whose text lines start with ``fold k``, so concurrent folds' progress can be told apart.

    ``epochs_only``: report as to a terminal, one line per epoch. Without a terminal a run also
    prints in-epoch progress, which its workers send to a queue they find by the Ray job's name;
    folds training at once share the job, and one fold's batches would be printed as another's.
    """

    def __init__(self, console, prefix: str, epochs_only: bool = False):
        self._console, self._prefix, self._epochs_only = console, prefix, epochs_only

    @property
    def is_terminal(self) -> bool:
        return True if self._epochs_only else self._console.is_terminal

    def print(self, *objects, **kwargs) -> None:
        if objects and isinstance(objects[0], str):
            objects = (self._prefix + objects[0], *objects[1:])
        self._console.print(*objects, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self._console, name)


def folds_at_once(local: dict[str, float] | None, folds: int, config: TrainConfig) -> tuple[int, float | None]:
    """How many folds train at once, and the CPUs per worker they then get (None: each run chooses).

    On a cluster, all of them: each fold asks for its own workers and the autoscaler adds nodes.
    On a local instance, as many as fit beside the CPU left for data loading, at 1 CPU per worker
    unless the job says (Tune's rule, :func:`raysegment.sizing.size_tune`): on a laptop, one at a
    time, as more would only share the same cores and wait on each other's data.
    """
    from raysegment.sizing import size_tune

    scaling = config.scaling
    if local is None:
        return folds, scaling.cpus_per_worker
    try:
        sizing = size_tune(local, folds, scaling.workers, scaling.cpus_per_worker, scaling.gpus_per_worker, driver_cpus=0.0)
    except ConfigError:  # not even one fits: each run sizes itself and says why in its own words
        return 1, scaling.cpus_per_worker
    concurrent = max(1, min(folds, sizing.concurrent or folds))
    return concurrent, (sizing.cpus_per_worker if concurrent > 1 else scaling.cpus_per_worker)


def train_folds(config: TrainConfig, folds: int, fold: int | None = None, seed: int = 0, address: str | None = None,
                console=None) -> FoldsResult:
    """Train fold ``fold`` (or all ``folds``, at once where they fit) of ``config.data.manifest`` into ``config.out``.

    Running it again with the same ``out`` resumes each fold as ``train`` does; ``--fold`` runs
    launched separately (one cluster job per fold) share the folder, and whichever finishes the
    last fold writes the ensemble.

    Args:
        config: the job every fold runs; its ``out`` is the folds folder.
        seed: draws the folds (not the training): the same manifest and seed give the same folds.

    Raises:
        ConfigError: bad fold numbers, too few patients, or ``out`` holding other folds.
    """
    from raysegment.manifest import read_manifest, write_manifest
    from raysegment.runtime import init_ray, local_resources
    from raysegment.train.run import train

    if not config.out or not config.data.manifest:
        raise ConfigError("train --folds: both an output folder (--out) and a manifest (--manifest) are needed")
    if fold is not None and not 0 <= fold < folds:
        raise ConfigError(f"--fold {fold}: folds are numbered 0 to {folds - 1}")
    out = storage.normalize(config.out)
    df = read_manifest(config.data.manifest)
    fold_of = assign_cv_folds(df, folds, seed)
    patients = fold_patients(df, fold_of, folds)
    if is_folds_folder(out):
        before = read_folds(out)
        if (before.get("folds"), before.get("seed"), [f["patients"] for f in before.get("fold", [])]) != (folds, seed, patients):
            raise ConfigError(f"{out} holds {before.get('folds')} folds of seed {before.get('seed')} drawn from other patients; "
                              "give another --out, or the same --folds, --fold-seed and manifest to resume")
    todo = list(range(folds)) if fold is None else [fold]
    for k in todo:  # only these: a fold trained by another job may be reading its own
        write_manifest(fold_manifest(df, fold_of, k), fold_manifest_uri(out, k))
    write_reports(out, folds, seed, storage.normalize(config.data.manifest), patients)

    init_ray(address)
    concurrent, cpus_per_worker = folds_at_once(local_resources(address), len(todo), config)
    if console is not None:
        console.print(f"cross-validation: {folds} folds of {sum(map(len, patients))} patients (seed {seed}); training "
                      f"{'fold ' + str(fold) if fold is not None else 'all'}, {concurrent} at a time", highlight=False)

    def run(k: int):
        job = apply_overrides(config, {"out": fold_dir(out, k), "data.manifest": fold_manifest_uri(out, k),
                                       "data.train_split": "train", "data.val_split": "val",
                                       "scaling.cpus_per_worker": cpus_per_worker})
        return train(job, address=address, console=None if console is None else _FoldConsole(console, f"fold {k}  ", concurrent > 1))

    runs, errors = {}, {}
    if concurrent == 1:  # in this thread: Ray Train's Ctrl-C handling (abort the run) needs the main thread
        for k in todo:
            try:
                runs[k] = run(k)
            except Exception as exc:  # noqa: BLE001 - the other folds still train and are recorded first
                errors[k] = exc
    else:
        # Threads, as Tune runs its trials' drivers: each blocks in its own trainer.fit(), whose
        # controller and workers are Ray actors, at most ``concurrent`` at a time.
        pool = ThreadPoolExecutor(max_workers=concurrent, thread_name_prefix="fold")
        futures = {k: pool.submit(run, k) for k in todo}
        try:
            for k, future in futures.items():
                try:
                    runs[k] = future.result()
                except Exception as exc:  # noqa: BLE001 - as above
                    errors[k] = exc
        except KeyboardInterrupt:
            import ray

            pool.shutdown(wait=False, cancel_futures=True)
            ray.shutdown()  # the folds' controllers and workers end with the driver's job; their threads then return
            raise
        pool.shutdown()
    result = write_reports(out, folds, seed, storage.normalize(config.data.manifest), patients)
    result.runs = runs
    if errors:
        k, exc = next(iter(errors.items()))
        if console is not None and len(errors) > 1:
            console.print(f"folds {sorted(errors)} failed; the first error follows", highlight=False)
        raise exc
    return result


def write_reports(out: str, folds: int, seed: int, manifest: str, patients: list[list[str]]) -> FoldsResult:
    """Write ``folds.json`` and ``cv_summary.json`` from what the fold folders hold now, and the
    ensemble once every fold has a model; folds trained by separate jobs are all found this way."""
    from raysegment.models.checkpoint import read_metadata
    from raysegment.models.ensemble import write_ensemble
    from raysegment.train.export import resolve_model

    entries, rows, models = [], [], []
    for k in range(folds):
        run_uri, model_uri, metrics = fold_dir(out, k), None, {}
        if storage.exists(storage.join(run_uri, "summary.json")):
            model_uri = resolve_model(run_uri)
            summary = json.loads(storage.read_bytes(storage.join(run_uri, "summary.json")))
            metadata = read_metadata(model_uri)
            metrics = {name: float(v) for name, v in (metadata.get("metrics") or {}).items() if name.startswith("val_")}
            rows.append({"fold": k, "patients": len(patients[k]), "selected": summary.get("selected", "best"),
                         "epoch": metadata.get("epoch"), **metrics})
            models.append(model_uri)
        entries.append({"fold": k, "patients": patients[k], "manifest_uri": fold_manifest_uri(out, k), "run_uri": run_uri,
                        "model_uri": model_uri})
    ensemble = storage.join(out, ENSEMBLE_DIR)
    done = len(models) == folds
    if done:
        write_ensemble(ensemble, models, cross_validation={"folds_uri": out, "folds": folds, "seed": seed})
    document = {"folds": folds, "seed": seed, "manifest": manifest, "fold": entries, "ensemble_uri": ensemble if done else None}
    storage.write_bytes(storage.join(out, FOLDS_FILE), json.dumps(document, indent=2).encode())
    summary = pd.DataFrame(rows)
    figures = [c for c in summary.columns if c.startswith("val_")]
    cv = {"folds": json.loads(summary.to_json(orient="records")),
          "mean": {c: _finite(summary[c].mean()) for c in figures},
          "std": {c: _finite(summary[c].std()) for c in figures}}
    storage.write_bytes(storage.join(out, SUMMARY_FILE), json.dumps(cv, indent=2).encode())
    return FoldsResult(out=out, folds=document, summary=summary, cv_summary=cv, ensemble_uri=document["ensemble_uri"])


def _finite(value) -> float | None:
    """A float for JSON; None for NaN (the std of a single fold)."""
    return None if pd.isna(value) else float(value)
