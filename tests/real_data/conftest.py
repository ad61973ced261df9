"""Real MRI scans from ``../shared/data`` (the project's development subsets), when present.

A user's clone has no ``../shared``: every test here then skips with the reason. The LGG model
trained here is shared by the tests of this folder (one Ray Train run per session).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fixtures_data import once

REAL_DATA = Path(os.environ.get("RAYSEGMENT_REAL_DATA", Path(__file__).parents[2].parent / "shared" / "data"))
LGG = REAL_DATA / "lgg" / "kaggle_3m"
#: Patients of the short training run in CI: trained on, selected on, and held out.
TRAIN, VAL, TEST = 8, 2, 3


@pytest.fixture(scope="session")
def real_lgg() -> Path:
    if not LGG.is_dir():
        pytest.skip(f"real LGG scans not found at {LGG} (a development checkout has them in ../shared/data)")
    return LGG


@pytest.fixture(scope="session")
def real_lgg_manifest(real_lgg, tmp_path_factory) -> str:
    """The patients ingested, then TRAIN / VAL / TEST of them drawn by a seeded shuffle (the rest left out)."""

    def build(root: Path) -> str:
        import numpy as np

        from raysegment.ingest import ingest
        from raysegment.manifest import write_manifest

        df = ingest("lgg", str(real_lgg), str(root / "all.parquet")).manifest
        order = np.random.default_rng(0).permutation(sorted(df["patient_id"].unique()))
        split = dict.fromkeys(order[:TRAIN], "train") | dict.fromkeys(order[TRAIN:TRAIN + VAL], "val") | \
            dict.fromkeys(order[TRAIN + VAL:TRAIN + VAL + TEST], "test")
        chosen = df[df["patient_id"].isin(split)]
        write_manifest(chosen.assign(split=chosen["patient_id"].map(split)), str(root / "manifest.parquet"))
        return str(root / "manifest.parquet")

    return once(tmp_path_factory, "real-lgg-manifest", build)


@pytest.fixture(scope="session")
def real_lgg_run(ray_session, real_lgg_manifest, tmp_path_factory):
    """The recommended recipe, shortened for CI: 64 px, width 8, 10 epochs on 8 real patients (a few minutes on 2 cores)."""

    def build(root: Path):
        from raysegment.train import load_config, train

        recipe = Path(__file__).parents[2] / "jobs" / "lgg_recipe.yaml"
        config = load_config(str(recipe), {
            "out": str(root / "run"), "data.manifest": real_lgg_manifest,
            "model.config.base_channels": 8, "optim.epochs": 10, "optim.batch_size": 8,
            "scaling.workers": 1, "scaling.cpus_per_worker": 1, "scaling.gpus_per_worker": 0,
            "tracking.progress": False, "tracking.tensorboard": False,
        }, image_size=64)
        return train(config)

    return once(tmp_path_factory, "real-lgg-run", build)


@pytest.fixture(scope="session")
def real_lgg_eval(real_lgg_run, real_lgg_manifest, tmp_path_factory):
    """``raysegment.evaluate`` of the run on its held-out patients."""
    from raysegment.evaluate import evaluate

    return once(tmp_path_factory, "real-lgg-eval", lambda root: evaluate(real_lgg_run.run_uri, real_lgg_manifest, "test", str(root)))
