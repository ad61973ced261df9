"""Cross-validation: patient-grouped folds, one Ray Train run per fold, pooled figures and the folds' ensemble."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from fixtures_data import once, tiny_config
from typer.testing import CliRunner

from raysegment.cli import app
from raysegment.errors import ConfigError
from raysegment.manifest import read_manifest, to_table, write_manifest
from raysegment.models import ModelSpec, read_metadata, save_model
from raysegment.train.export import resolve_model
from raysegment.train.folds import assign_cv_folds, fold_manifest, folds_at_once, train_folds


def slice_manifest(patients: int = 30, test: int = 6, unlabeled: int = 2, slices: int = 4) -> pd.DataFrame:
    """Slice rows of ``patients`` (every third with foreground), the first ``test`` in the test split, the last ``unlabeled`` without masks."""
    rows = []
    for p in range(patients):
        split = "test" if p < test else "unlabeled" if p >= patients - unlabeled else ("val" if p % 5 == 0 else "train")
        for s in range(slices):
            labeled = split != "unlabeled"
            rows.append({"case_id": f"P{p:02d}_{s}", "patient_id": f"P{p:02d}", "dataset": "lgg", "level": "slice",
                         "image_uris": [f"P{p:02d}_{s}.tif"], "channels": ["flair"], "mask_uri": f"P{p:02d}_{s}_mask.tif" if labeled else None,
                         "slice_index": s, "volume_id": f"P{p:02d}", "split": split, "format": "tiff",
                         "has_foreground": (p % 3 == 0 and s == 1) if labeled else None})
    return pd.DataFrame(rows)


def test_folds_are_patient_grouped_disjoint_stratified_and_cover_every_non_test_patient():
    df = slice_manifest()
    fold_of = assign_cv_folds(df, folds=4, seed=3)
    pooled = df["split"].isin(["train", "val"])
    assert fold_of[pooled].notna().all() and fold_of[~pooled].isna().all()  # test and unlabeled rows take no part
    per_patient = df[pooled].assign(fold=fold_of).groupby("patient_id")["fold"].nunique()
    per_volume = df[pooled].assign(fold=fold_of).groupby("volume_id")["fold"].nunique()
    assert (per_patient == 1).all() and (per_volume == 1).all()  # no patient's (or volume's) slices in two folds
    patients = df[pooled].assign(fold=fold_of).groupby("patient_id").agg(fold=("fold", "first"), positive=("has_foreground", "any"))
    assert set(patients.index) == set(df.loc[pooled, "patient_id"])  # every non-test patient, each in exactly one fold
    counts = patients.groupby("fold").agg(patients=("positive", "size"), positive=("positive", "sum"))
    assert sorted(counts.index) == [0, 1, 2, 3]
    assert counts["patients"].max() - counts["patients"].min() <= 1
    assert counts["positive"].max() - counts["positive"].min() <= 1 and counts["positive"].min() >= 1
    assert fold_of.equals(assign_cv_folds(df, folds=4, seed=3))
    assert not fold_of.equals(assign_cv_folds(df, folds=4, seed=4))


def test_a_fold_manifest_holds_out_its_patients_as_val_and_keeps_the_test_split():
    df = slice_manifest()
    fold_of = assign_cv_folds(df, folds=3, seed=0)
    for k in range(3):
        manifest = fold_manifest(df, fold_of, k)
        to_table(manifest)  # a valid manifest: no patient in two splits
        held_out = set(df.loc[fold_of == k, "patient_id"])
        assert set(manifest.loc[manifest["split"] == "val", "patient_id"]) == held_out
        assert set(manifest.loc[manifest["split"] == "train", "patient_id"]) == set(df.loc[fold_of.notna(), "patient_id"]) - held_out
        unchanged = fold_of.isna()
        assert manifest.loc[unchanged, "split"].equals(df.loc[unchanged, "split"])


def test_fold_assignment_errors_are_one_line():
    df = slice_manifest(patients=10, test=6, unlabeled=1)  # 3 train/val patients
    with pytest.raises(ConfigError, match="5 folds need at least 5 labeled patients"):
        assign_cv_folds(df, folds=5)
    with pytest.raises(ConfigError, match="at least 2 folds"):
        assign_cv_folds(slice_manifest(), folds=1)
    mixed = slice_manifest()
    mixed.loc[mixed["patient_id"] == "P07", "volume_id"] = "P08"
    with pytest.raises(ConfigError, match="volume 'P08' has slices of several patients"):
        assign_cv_folds(mixed, folds=3)


def test_folds_run_at_once_where_they_fit():
    config = tiny_config("m.parquet", "out", **{"scaling.workers": 1, "scaling.cpus_per_worker": None})
    assert folds_at_once(None, 5, config) == (5, None)  # a cluster: every fold at once, each sized as the job says
    assert folds_at_once({"CPU": 2.0}, 5, config) == (1, None)  # a 2-core laptop: one at a time, sized by train itself
    assert folds_at_once({"CPU": 16.0}, 5, config) == (5, 3.0)  # 15 CPUs left beside data loading, shared
    assert folds_at_once({"CPU": 16.0}, 2, config) == (2, 7.5)
    half = tiny_config("m.parquet", "out", **{"scaling.workers": 1, "scaling.cpus_per_worker": 0.5})
    assert folds_at_once({"CPU": 2.0}, 2, half) == (2, 0.5)
    gpus = tiny_config("m.parquet", "out", **{"scaling.workers": 1, "scaling.gpus_per_worker": 1})
    assert folds_at_once({"CPU": 16.0, "GPU": 2.0}, 5, gpus)[0] == 2


class FakeTrain:
    """Stands in for ``raysegment.train.run.train``: records each fold's job and leaves a finished run (a model and summary.json)."""

    def __init__(self, fail: set[int] = frozenset()):
        self.jobs, self.fail = [], fail

    def __call__(self, job, address=None, console=None):
        fold = int(job.out.rsplit("_", 1)[1])
        self.jobs.append(job)
        if fold in self.fail:
            raise RuntimeError(f"fold {fold} broke")
        spec = ModelSpec("unet", 3, 1, {"base_channels": 4, "depth": 2})
        save_model(f"{job.out}/best", spec.build(), spec, preprocess=job.data.preprocess.model_dump(mode="json"),
                   class_names=["tumor"], metrics={"val_patient_dice": 0.5 + fold / 10, "train_loss": 1.0}, epoch=1)
        with open(f"{job.out}/summary.json", "w") as f:
            json.dump({"selected": "best"}, f)


@pytest.fixture
def fake_train(monkeypatch):
    """``train_folds`` without Ray: a 2-CPU local instance and :class:`FakeTrain` runs."""
    import raysegment.runtime
    import raysegment.train.run

    fake = FakeTrain()
    monkeypatch.setattr(raysegment.runtime, "init_ray", lambda address=None: None)
    monkeypatch.setattr(raysegment.runtime, "local_resources", lambda address=None: {"CPU": 2.0})
    monkeypatch.setattr(raysegment.train.run, "train", fake)
    return fake


def test_one_fold_trains_alone_and_the_last_one_writes_the_ensemble(tmp_path, fake_train):
    manifest = str(tmp_path / "manifest.parquet")
    df = slice_manifest()
    write_manifest(df, manifest)
    out = tmp_path / "cv"
    config = tiny_config(manifest, out)
    train_folds(config, folds=3, fold=1, seed=2)
    assert [job.out for job in fake_train.jobs] == [str(out / "fold_1")]
    job = fake_train.jobs[0]
    assert job.data.manifest == str(out / "manifests" / "fold_1.parquet") and not (out / "manifests" / "fold_0.parquet").exists()
    assert (job.data.train_split, job.data.val_split) == ("train", "val") and job.optim == config.optim
    folds = json.loads((out / "folds.json").read_text())
    fold_of = assign_cv_folds(df, folds=3, seed=2)
    assert [f["patients"] for f in folds["fold"]] == [sorted(set(df.loc[fold_of == k, "patient_id"])) for k in range(3)]
    assert set(read_manifest(job.data.manifest).query("split == 'val'")["patient_id"]) == set(folds["fold"][1]["patients"])
    assert [f["model_uri"] is not None for f in folds["fold"]] == [False, True, False] and folds["ensemble_uri"] is None
    with pytest.raises(ConfigError, match=r"ensemble is not written yet \(folds without a model: \[0, 2\]\)"):
        resolve_model(str(out))

    with pytest.raises(ConfigError, match="holds 3 folds of seed 2"):
        train_folds(config, folds=3, seed=5)  # other folds in the same folder: refused before anything runs
    result = train_folds(config, folds=3, fold=0, seed=2)
    assert result.ensemble_uri is None and len(result.summary) == 2
    result = train_folds(config, folds=3, fold=2, seed=2)
    assert result.ensemble_uri == str(out / "ensemble") == resolve_model(str(out))
    members = read_metadata(result.ensemble_uri)["model"]["config"]["members"]
    assert members == [f"../fold_{k}/best" for k in range(3)]
    summary = json.loads((out / "cv_summary.json").read_text())
    assert [row["val_patient_dice"] for row in summary["folds"]] == pytest.approx([0.5, 0.6, 0.7])
    assert summary["mean"]["val_patient_dice"] == pytest.approx(0.6) and "train_loss" not in summary["mean"]


def test_a_failing_fold_leaves_the_others_recorded(tmp_path, fake_train):
    manifest = str(tmp_path / "manifest.parquet")
    write_manifest(slice_manifest(), manifest)
    fake_train.fail = {0}
    with pytest.raises(RuntimeError, match="fold 0 broke"):
        train_folds(tiny_config(manifest, tmp_path / "cv"), folds=2)
    assert len(fake_train.jobs) == 2  # fold 1 still trained
    folds = json.loads((tmp_path / "cv" / "folds.json").read_text())
    assert [f["model_uri"] is not None for f in folds["fold"]] == [False, True]


# --- the real thing: two tiny folds trained by the CLI at once, then scored ---------------------------------------

@pytest.fixture(scope="module")
def cv_run(ray_session, lgg_manifest, tmp_path_factory):
    """``raysegment train --folds 2`` on the LGG sample (6 train/val patients): 1 epoch, 32 px, 1 worker x 0.5 CPU per fold, so both fit at once."""

    def build(root):
        out = root / "cv"
        args = ["train", "--folds", "2", "--manifest", lgg_manifest, "--out", str(out), "--epochs", "1", "--batch-size", "4",
                "--image-size", "32", "--workers", "1", "--cpus-per-worker", "0.5", "--no-tensorboard",
                "--set", "model.config={base_channels: 4, depth: 2}", "--set", "data.preprocess.labels={tumor: nonzero}",
                "--set", "data.preprocess.steps=[{name: scale}]", "--set", "checkpoint.max_failures=0"]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, (result.output, result.exception)
        return {"out": out, "output": result.output, "manifest": lgg_manifest}

    return once(tmp_path_factory, "cv-run", build)


@pytest.mark.slow
def test_train_folds_command_trains_every_fold_at_once_and_writes_folds_json(cv_run):
    out, output = cv_run["out"], cv_run["output"]
    assert "2 at a time" in output and "fold 0  epoch   1/1" in output and "fold 1  epoch   1/1" in output
    assert "cross-validation: 2 of 2 folds trained" in output
    df = read_manifest(cv_run["manifest"])
    folds = json.loads((out / "folds.json").read_text())
    assert folds["folds"] == 2 and folds["seed"] == 0 and folds["ensemble_uri"] == str(out / "ensemble")
    held_out = [set(f["patients"]) for f in folds["fold"]]
    assert held_out[0].isdisjoint(held_out[1])
    assert held_out[0] | held_out[1] == set(df.loc[df["split"].isin(["train", "val"]), "patient_id"])
    for k, entry in enumerate(folds["fold"]):
        assert entry["run_uri"] == str(out / f"fold_{k}") and entry["model_uri"] == str(out / f"fold_{k}" / "best")
        job = yaml.safe_load((out / f"fold_{k}" / "config.yaml").read_text())
        assert job["out"] == entry["run_uri"] and job["data"]["manifest"] == entry["manifest_uri"]
        trained_on = read_manifest(entry["manifest_uri"])
        assert set(trained_on.loc[trained_on["split"] == "val", "patient_id"]) == held_out[k]
        assert set(trained_on.loc[trained_on["split"] == "train", "patient_id"]) == held_out[1 - k]
        assert trained_on.loc[df["split"] == "test", "split"].eq("test").all()
        assert list(pd.read_parquet(out / f"fold_{k}" / "history.parquet")["epoch"]) == [1]
    summary = json.loads((out / "cv_summary.json").read_text())
    dice = [row["val_patient_dice"] for row in summary["folds"]]
    assert len(dice) == 2 and summary["mean"]["val_patient_dice"] == pytest.approx(np.mean(dice))
    members = read_metadata(str(out / "ensemble"))["model"]["config"]["members"]
    assert members == ["../fold_0/best", "../fold_1/best"]


@pytest.fixture(scope="module")
def cv_scores(cv_run, tmp_path_factory):
    """``raysegment evaluate --model FOLDS``: each fold on its held-out patients, pooled; with the calls it made to ``evaluate``."""
    import raysegment.evaluate

    def build(root):
        calls, evaluate = [], raysegment.evaluate.evaluate

        def spy(model, manifest, splits, out, **options):
            calls.append({"model": model, "held_out": set(read_manifest(manifest).query("split == @splits")["patient_id"]), "out": out})
            return evaluate(model, manifest, splits, out, **options)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(raysegment.evaluate, "evaluate", spy)
            result = CliRunner().invoke(app, ["evaluate", "--model", str(cv_run["out"]), "--manifest", cv_run["manifest"], "--out", str(root)])
        assert result.exit_code == 0, (result.output, result.exception)
        return {"out": root, "output": result.output, "calls": calls}

    return once(tmp_path_factory, "cv-scores", build)


@pytest.mark.slow
def test_cross_validation_figures_pool_each_folds_own_evaluation(cv_run, cv_scores):
    from raysegment.evaluate.run import metric_columns
    from raysegment.metrics import aggregate

    out, scores = cv_run["out"], cv_scores["out"]
    assert "cross-validation of" in cv_scores["output"] and "all folds pooled" in cv_scores["output"]
    folds = json.loads((out / "folds.json").read_text())
    # Each fold's own model, through evaluate() itself, on exactly that fold's held-out patients.
    assert [(c["model"], c["held_out"], c["out"]) for c in cv_scores["calls"]] == \
        [(str(out / f"fold_{k}" / "best"), set(f["patients"]), str(scores / f"fold_{k}")) for k, f in enumerate(folds["fold"])]
    df = read_manifest(cv_run["manifest"])
    owner = df.drop_duplicates("volume_id").set_index("volume_id")["patient_id"]
    pooled = pd.read_parquet(scores / "case_metrics.parquet")
    pooled_volumes = pd.read_parquet(scores / "volume_metrics.parquet")
    own = []
    for k, entry in enumerate(folds["fold"]):
        volumes = pd.read_parquet(scores / f"fold_{k}" / "volume_metrics.parquet")
        assert set(owner[volumes["case_id"]]) == set(entry["patients"])
        own.append(pd.read_parquet(scores / f"fold_{k}" / "case_metrics.parquet").assign(fold=k))
        pd.testing.assert_frame_equal(pooled_volumes[pooled_volumes["fold"] == k].drop(columns=["fold", "split"]).reset_index(drop=True),
                                      volumes.drop(columns=["split"]).reset_index(drop=True))
    own = pd.concat(own, ignore_index=True)
    pd.testing.assert_frame_equal(pooled.drop(columns=["split"]), own[pooled.columns.drop("split")])
    assert set(pooled["split"]) == {"cv"} and len(pooled) == (df["split"].isin(["train", "val"])).sum()  # every non-test slice once

    summary = pd.read_parquet(scores / "summary.parquet").set_index("metric")
    for metric in ("dice", "hd95"):
        assert summary.loc[metric, "mean"] == pytest.approx(own[metric].mean())
        assert summary.loc[metric, "median"] == pytest.approx(own[metric].median())
    fold_summary = pd.read_parquet(scores / "fold_summary.parquet")
    pd.testing.assert_frame_equal(fold_summary, aggregate(own, by=("fold", "class"), metrics=metric_columns(own)), check_dtype=False)
    assert "loss" in set(fold_summary["metric"])  # the loss the folds were trained with, as evaluate reports it
    overview = pd.DataFrame(json.loads((scores / "overview.json").read_text())).set_index("split")
    assert overview.loc["cv", "patient_dice"] == pytest.approx(pooled_volumes["dice"].mean())
    for k, entry in enumerate(folds["fold"]):
        fold_overview = json.loads((scores / f"fold_{k}" / "overview.json").read_text())[0]
        assert overview.loc[f"fold {k}", "patients"] == len(entry["patients"])
        assert overview.loc[f"fold {k}", "patient_dice"] == pytest.approx(fold_overview["patient_dice"])


@pytest.mark.slow
def test_the_ensemble_is_what_evaluate_and_infer_take_for_the_folds_folder(cv_run, tmp_path):
    from raysegment.infer import InferConfig, run_inference
    from raysegment.models import load_model
    from raysegment.models.ensemble import Ensemble

    out = cv_run["out"]
    assert resolve_model(str(out)) == str(out / "ensemble")
    model, metadata = load_model(resolve_model(str(out)))
    assert isinstance(model, Ensemble) and len(model.members) == 2
    assert metadata["preprocess"] == read_metadata(str(out / "fold_0" / "best"))["preprocess"]

    result = CliRunner().invoke(app, ["evaluate", "--model", str(out), "--manifest", cv_run["manifest"], "--split", "test",
                                      "--out", str(tmp_path / "eval")])
    assert result.exit_code == 0, (result.output, result.exception)
    reported = pd.read_parquet(tmp_path / "eval" / "case_metrics.parquet").set_index("case_id")
    df = read_manifest(cv_run["manifest"])
    test_only = str(tmp_path / "test.parquet")
    write_manifest(df[df["split"] == "test"], test_only)
    inferred = run_inference(InferConfig(model=str(out), manifest=test_only, out=str(tmp_path / "infer"), workers=1, cpus_per_worker=1))
    assert inferred.failed == 0 and inferred.done == len(reported) == (df["split"] == "test").sum()
    written = inferred.metrics.set_index("case_id")
    np.testing.assert_allclose(written.loc[reported.index, "dice"], reported["dice"], atol=1e-9)
