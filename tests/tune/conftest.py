"""Real inputs for the search tests: a tiny LGG sample dataset, its manifest and a tiny base job."""

from __future__ import annotations

import pytest
import yaml

from raysegment.ingest import ingest
from raysegment.sample_data import make_sample_data

#: Every trial trains a 4-channel, depth-2 U-Net on 32 px slices with a quarter CPU per worker, so
#: two trials and the Ray Data tasks that read their scans fit the 2-CPU test cluster.
TINY_TRAIN = {
    "data": {"preprocess": {"steps": [{"name": "scale"}, {"name": "resize", "size": 32}]}, "augment": {"enabled": False}},
    "model": {"name": "unet", "config": {"base_channels": 4, "depth": 2}},
    "optim": {"batch_size": 8},
    "scaling": {"cpus_per_worker": 0.25},
    "tracking": {"tensorboard": False},
}


@pytest.fixture(scope="session")
def tiny_lgg(tmp_path_factory) -> dict:
    """6 LGG patients x 4 slices of 32 px, their manifest, and a base training job file."""
    root = tmp_path_factory.mktemp("tune_lgg")
    make_sample_data(str(root / "data"), "lgg", patients=6, slices=4, size=32)
    ingest("lgg", str(root / "data"), str(root / "manifest.parquet"))
    (root / "base_train.yaml").write_text(yaml.safe_dump(TINY_TRAIN))
    return {"root": root, "manifest": str(root / "manifest.parquet"), "train_yaml": str(root / "base_train.yaml")}


@pytest.fixture(scope="session", autouse=True)
def state_key_home(tmp_path_factory):
    """Searches sign their state with a key file in a temporary config folder, never the user's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("config")))
        patch.delenv("RAYSEGMENT_STATE_KEY", raising=False)
        yield
