"""Generated MSD and nnU-Net sample folders: made once per session, copied per test that edits them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from raysegment.sample_data import make_sample_data

#: Small enough to write in a second: 4 labeled and 2 unlabeled cases of 16 x 16 x 6 voxels.
SAMPLE = dict(patients=4, test=2, size=16, depth=6, seed=3)


@pytest.fixture(scope="session")
def msd_sample(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("msd-sample")
    make_sample_data(str(out), "msd", **SAMPLE)
    return out


@pytest.fixture(scope="session")
def nnunet_sample(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("nnunet-sample")
    make_sample_data(str(out), "nnunet", **SAMPLE)
    return out


@pytest.fixture
def msd_root(msd_sample, tmp_path) -> Path:
    """A copy of the MSD sample that the test may break."""
    return Path(shutil.copytree(msd_sample, tmp_path / "msd"))


@pytest.fixture
def nnunet_root(nnunet_sample, tmp_path) -> Path:
    """A copy of the nnU-Net sample that the test may break."""
    return Path(shutil.copytree(nnunet_sample, tmp_path / "nnunet"))
