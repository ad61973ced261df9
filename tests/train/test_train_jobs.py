"""Every seed job file runs one tiny epoch on the matching sample data.

Sizes are overridden through the same mechanism the CLI uses (``cli_overrides`` + ``--image-size``),
and pretrained weights are switched off (no model hub is reachable in tests).
"""

from __future__ import annotations

import pytest
from test_train_config import JOBS
from test_train_models import TINY_TRANSUNET

from raysegment.models import load_model
from raysegment.train import load_config, train
from raysegment.train.config import cli_overrides


def _manifest_fixture(job_name: str) -> str:
    return "brats_manifest" if job_name.startswith("brats") else "lv_manifest" if job_name.startswith("lv") else "lgg_manifest"


@pytest.mark.slow
@pytest.mark.parametrize("job", JOBS, ids=lambda p: p.stem)
def test_job_runs_one_tiny_epoch(ray_session, request, tmp_path, job):
    manifest = request.getfixturevalue(_manifest_fixture(job.stem))
    base = load_config(str(job))
    sets = ["data.max_cases=4", "checkpoint.max_failures=0", "tracking.progress=false"]
    if base.model.name == "unet":
        sets.append("model.config.base_channels=4")
    if base.model.name == "unetpp":
        sets += ["model.config.base_channels=4", "model.config.depth=2"]
    if base.model.name == "transunet":
        sets += [f"model.config.{key}={value}" for key, value in TINY_TRANSUNET.items()]
    overrides = cli_overrides(epochs=1, batch_size=4, workers=1, gpus_per_worker=0, cpus_per_worker=1,
                              out=str(tmp_path / "run"), manifest=manifest, sets=sets)
    if "encoder_weights" in base.model.config:
        overrides.update(cli_overrides(encoder_weights="none"))
    config = load_config(str(job), overrides, image_size=32)
    result = train(config)

    assert list(result.history["epoch"]) == [1]
    _, meta = load_model(result.best_model_uri)
    assert meta["class_names"] == base.data.preprocess.class_names
    assert meta["model"]["classes"] == base.data.preprocess.num_classes
    assert meta["model"]["in_channels"] == len(meta["channels"])
    if base.data.preprocess.channels:
        assert meta["channels"] == base.data.preprocess.channels
