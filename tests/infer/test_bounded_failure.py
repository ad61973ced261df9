"""A case that kills its predictor becomes an error row after bounded tries; the rest of the run completes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import tifffile
from poison_run import EXIT_WIDTH, Poison  # pytest puts this folder on sys.path

from raysegment import storage
from raysegment.manifest import write_manifest
from raysegment.models import ModelSpec, save_model
from raysegment.preprocess import PreprocessConfig

pytestmark = pytest.mark.slow


def _poisoned_manifest(lgg, root) -> str:
    """The 8 LGG cases, and a case of the poisoned width (a unit of its own) amid them."""
    first = lgg["df"].iloc[0].to_dict()
    path = str(root / "exits.tif")
    tifffile.imwrite(path, tifffile.imread(first["image_uris"][0])[:EXIT_WIDTH, :EXIT_WIDTH])
    poisoned = {**first, "case_id": "exits", "patient_id": "exits", "volume_id": None, "image_uris": [path], "mask_uri": None,
                "split": "unlabeled"}
    uri = str(root / "poisoned.parquet")
    write_manifest(pd.concat([lgg["df"].iloc[:4], pd.DataFrame([poisoned]), lgg["df"].iloc[4:]], ignore_index=True), uri)
    return uri


# The fixture's model training is left out of the limit; the run itself starts a Ray instance of its own.
@pytest.mark.timeout(240, func_only=True)
def test_a_case_that_kills_its_predictor_becomes_an_error_row_and_the_night_completes(lgg, tmp_path):
    model = str(tmp_path / "poison")
    preprocess = PreprocessConfig(labels={"tumor": "nonzero"}, steps=[{"name": "scale"}])  # no resize: widths reach the model
    save_model(model, Poison(3, 1), ModelSpec("poison", 3, 1), preprocess=preprocess.model_dump(), class_names=["tumor"])
    out = str(tmp_path / "out")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    driver = os.path.join(os.path.dirname(__file__), "poison_run.py")
    finished = subprocess.run([sys.executable, driver, model, _poisoned_manifest(lgg, tmp_path), out], env=env,
                              capture_output=True, text=True, timeout=230)
    assert finished.returncode == 0, finished.stderr[-3000:]
    run = json.loads(finished.stdout.strip().splitlines()[-1])
    assert (run["cases"], run["done"], run["failed"]) == (9, 8, 1)

    errors = storage.read_table(f"{out}/errors.parquet").to_pandas()
    assert list(errors["case_id"]) == ["exits"] and list(errors["stage"]) == ["worker"]
    assert "died or ran past the per-case timeout (1800 s a stage) on each of 3 tries" in errors["error"][0]
    assert json.loads(storage.read_bytes(f"{out}/run.json"))["failed"] == 1
    assert len(storage.list_files(f"{out}/records")) == 8
    assert not storage.exists(f"{out}/lease.json")
