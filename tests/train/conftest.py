"""Sample datasets and their manifests for the training tests, written once per session."""

from __future__ import annotations

import pytest

from raysegment.ingest import ingest
from raysegment.sample_data import make_sample_data
from raysegment.splits import SplitConfig
from raysegment.train import load_config

#: Overrides that make any job tiny: 32 px, few cases, 2 CPU workers sharing the 2 test CPUs
#: with the Ray Data tasks (half a CPU each).
TINY = {
    "optim.batch_size": 4,
    "data.max_cases": 12,
    "scaling.workers": 2,
    "scaling.cpus_per_worker": 0.5,
    "checkpoint.max_failures": 0,
}


def make_manifest(root, kind: str, **options) -> str:
    make_sample_data(str(root / "data"), kind, seed=1, **options)
    manifest = str(root / "manifest.parquet")
    ingest(kind, str(root / "data"), manifest, split=SplitConfig(train=0.5, val=0.25, test=0.25, seed=0))
    return manifest


@pytest.fixture(scope="session")
def lgg_manifest(tmp_path_factory) -> str:
    """LGG layout: 8 patients x 6 slices of 64 px (RGB TIFF)."""
    return make_manifest(tmp_path_factory.mktemp("lgg"), "lgg", patients=8, slices=6, size=64)


@pytest.fixture(scope="session")
def brats_manifest(tmp_path_factory) -> str:
    """BraTS layout: 4 patients, 4-modality 32x32x8 NIfTI volumes."""
    return make_manifest(tmp_path_factory.mktemp("brats"), "brats", patients=4, size=32, depth=8)


@pytest.fixture(scope="session")
def lv_manifest(tmp_path_factory) -> str:
    """Cardiac LV layout: 4 patients x 3 DICOM slices of 48 px with PNG masks."""
    return make_manifest(tmp_path_factory.mktemp("lv"), "lv", patients=4, slices=3, size=48, test_patients=1)


def tiny_config(manifest: str, out, model: str = "unet", model_config: dict | None = None, **overrides):
    """A 32 px job on ``manifest`` with ``TINY`` settings and then ``overrides`` (dotted keys)."""
    return load_config(None, {
        **TINY,
        "out": str(out),
        "data.manifest": manifest,
        "data.preprocess.labels": {"tumor": "nonzero"},
        "data.preprocess.steps": [{"name": "scale"}, {"name": "resize", "size": 32}],
        "model.name": model,
        "model.config": model_config if model_config is not None else {"base_channels": 4, "depth": 2},
        "tracking.progress": False,
        **overrides,
    })
