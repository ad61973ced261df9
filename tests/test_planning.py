"""3D planning from the data: median spacing, and a patch the network's poolings divide."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from raysegment.errors import ConfigError
from raysegment.models.dynunet import plan_network
from raysegment.planning import patch_size, plan_volumes


def _rows(tmp_path, cases):
    rows = []
    for i, (shape, zooms) in enumerate(cases):
        uri = tmp_path / f"case{i}.nii.gz"
        nib.save(nib.Nifti1Image(np.zeros(shape, np.uint8), np.diag([*zooms, 1.0])), uri)
        rows.append({"case_id": f"case{i}", "mask_uri": str(uri)})
    return pd.DataFrame(rows)


def test_median_spacing_and_shape_at_that_spacing(tmp_path):
    # Hippocampus-like crops; one case scanned at half the resolution along the last axis.
    rows = _rows(tmp_path, [((36, 50, 35), (1, 1, 1)), ((34, 52, 36), (1, 1, 1)), ((38, 48, 17), (1, 1, 2))])
    plan = plan_volumes(rows)
    assert plan.spacing == (1.0, 1.0, 1.0) and plan.cases == 3
    assert plan.median_shape == (36, 50, 35)  # the coarse case counts 17 x 2 = 34 voxels at 1 mm: median of 35, 36, 34
    assert plan.patch_size == (40, 56, 40)  # nnU-Net's hippocampus patch
    plan_network(plan.patch_size, plan.spacing)  # divides evenly


def test_spacing_and_shape_follow_the_orientation(tmp_path):
    rows = _rows(tmp_path, [((20, 30, 40), (-1.0, 2.0, 3.0))])
    las = plan_volumes(rows)
    assert las.spacing == (1.0, 2.0, 3.0) and las.median_shape == (20, 30, 40)


@pytest.mark.parametrize("shape,spacing", [((140, 170, 140), (1, 1, 1)), ((20, 330, 300), (3.6, 0.6, 0.6)), ((9, 11, 5), (1, 1, 1))])
def test_patches_fit_the_budget_and_the_poolings(shape, spacing):
    patch = patch_size(shape, spacing, max_voxels=128**3)
    assert np.prod(patch) <= 128**3 or min(patch) == 8
    assert all(p >= 8 for p in patch) and max(patch) >= 16
    plan_network(patch, spacing)  # raises when an axis does not halve evenly


def test_no_labeled_volume_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="labeled volume"):
        plan_volumes(pd.DataFrame({"case_id": ["a"], "mask_uri": [None]}))
    nib.save(nib.Nifti1Image(np.zeros((8, 8), np.uint8), np.eye(4)), tmp_path / "flat.nii.gz")
    with pytest.raises(ConfigError, match="one slice"):
        plan_volumes(pd.DataFrame({"case_id": ["a"], "mask_uri": [str(tmp_path / "flat.nii.gz")]}))


def test_a_chosen_spacing_plans_the_patch_at_it(tmp_path):
    rows = _rows(tmp_path, [((36, 50, 35), (1, 1, 1))] * 3)
    plan = plan_volumes(rows, spacing=[2.0, 2.0, 1.0])
    assert plan.spacing == (2.0, 2.0, 1.0) and plan.median_shape == (18, 25, 35) and plan.patch_size == (20, 28, 40)
