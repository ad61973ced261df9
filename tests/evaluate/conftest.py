"""Small checkpoints fitted in-process (no Ray Train) on the shared sample datasets, for the evaluation tests."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from fixtures_data import brats_manifest, lgg_manifest  # noqa: F401  (fixtures)

from raysegment.manifest import read_manifest
from raysegment.models import ModelSpec, save_model
from raysegment.preprocess import PreprocessConfig, iter_examples


def fitted_checkpoint(uri: str, manifest: str, preprocess: PreprocessConfig, channels: list[str], steps: int = 30) -> str:
    """A tiny U-Net fitted for a few full-batch steps of BCE on the training split, so its masks are not trivial."""
    import torch

    df = read_manifest(manifest)
    rows = df[(df["split"] == "train") & df["mask_uri"].notna()]
    examples = [e for _, row in rows.iterrows() for e in iter_examples(row.to_dict(), preprocess)]
    images = torch.from_numpy(np.stack([e["image"] for e in examples]))
    masks = torch.from_numpy(np.stack([e["mask"] for e in examples]))
    torch.manual_seed(0)
    spec = ModelSpec("unet", len(channels), preprocess.num_classes, {"base_channels": 4, "depth": 2})
    model = spec.build()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(model(images), masks).backward()
        optimizer.step()
    save_model(uri, model.eval(), spec, preprocess=preprocess.model_dump(mode="json"), class_names=preprocess.class_names,
               channels=channels, loss="bce")  # the loss it was fitted with, as training records it
    return uri


@pytest.fixture(scope="session")
def lgg_eval(lgg_manifest, tmp_path_factory) -> dict:
    """LGG slices of 64 px; a model at full size and one at 32 px (the resize must be undone)."""
    root, manifest = tmp_path_factory.mktemp("lgg_eval"), lgg_manifest
    channels = ["pre-contrast", "flair", "post-contrast"]
    full = PreprocessConfig(labels={"tumor": "nonzero"}, steps=[{"name": "scale"}])
    small = PreprocessConfig(labels={"tumor": "nonzero"}, steps=[{"name": "scale"}, {"name": "resize", "size": 32}])
    return {
        "manifest": manifest,
        "full": fitted_checkpoint(str(root / "full"), manifest, full, channels),
        "small": fitted_checkpoint(str(root / "small"), manifest, small, channels),
    }


@pytest.fixture(scope="session")
def brats_eval(brats_manifest, tmp_path_factory) -> dict:
    """BraTS volumes (4 modalities, 3 overlapping regions) and a model on 32 px slices."""
    root, manifest = tmp_path_factory.mktemp("brats_eval"), brats_manifest
    preprocess = PreprocessConfig(channels=["flair", "t1", "t1ce", "t2"], labels={"WT": [1, 2, 4], "TC": [1, 4], "ET": [4]},
                                  steps=[{"name": "zscore"}, {"name": "resize", "size": 32}])
    return {"manifest": manifest, "model": fitted_checkpoint(str(root / "model"), manifest, preprocess, preprocess.channels)}


@pytest.fixture(scope="session")
def lgg_scores(ray_session, lgg_eval, tmp_path_factory) -> tuple:
    """``(out, EvalResult)``: the full-size LGG model in a run folder (under ``best/``, as training leaves
    it), evaluated once on every split for all the tests that check an LGG evaluation."""
    from raysegment.evaluate import evaluate

    run = tmp_path_factory.mktemp("eval_run") / "run"
    shutil.copytree(lgg_eval["full"], run / "best")
    out = run / "evaluation"
    return out, evaluate(str(run), lgg_eval["manifest"], ["train", "val", "test"], str(out))
