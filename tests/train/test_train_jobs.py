"""Every seed job file runs one tiny epoch on the matching sample data.

Sizes are overridden through the same mechanism the CLI uses (``cli_overrides`` + ``--image-size``),
and pretrained weights are switched off (no model hub is reachable in tests). The LGG jobs of the
four trained models already ran their tiny epoch as the first half of ``trained_job``; the others
run it here, on one worker.
"""

from __future__ import annotations

import pytest
from fixtures_data import JOBS, MODEL_JOBS, manifest_fixture, tiny_job

from raysegment.models import load_model
from raysegment.train import load_config, train

TRAINED = {job: model for model, job in MODEL_JOBS.items()}


@pytest.mark.slow
@pytest.mark.parametrize("job", JOBS, ids=lambda p: p.stem)
def test_job_runs_one_tiny_epoch(ray_session, trained_job, request, tmp_path, job):
    if job.stem in TRAINED:
        result = trained_job(TRAINED[job.stem]).first
    else:
        manifest = request.getfixturevalue(manifest_fixture(job))
        result = train(tiny_job(job, manifest, tmp_path / "run", **{"scaling.workers": 1, "scaling.cpus_per_worker": 1,
                                                                    "data.max_cases": 4}))

    base = load_config(str(job))
    assert list(result.history["epoch"]) == [1]
    _, meta = load_model(result.best_model_uri)
    assert meta["class_names"] == base.data.preprocess.class_names
    assert meta["model"]["classes"] == base.data.preprocess.out_channels
    assert meta["model"]["in_channels"] == len(meta["channels"])
    if base.data.preprocess.channels:
        assert meta["channels"] == base.data.preprocess.channels
