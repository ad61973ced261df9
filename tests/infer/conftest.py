"""Real inputs for the inference tests: sample datasets, their manifests, and tiny trained checkpoints."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from raysegment.ingest import ingest
from raysegment.manifest import read_manifest
from raysegment.models import ModelSpec, create_model, save_model
from raysegment.preprocess import PreprocessConfig, iter_examples
from raysegment.sample_data import make_sample_data

MODEL_OPTIONS = {"base_channels": 4, "depth": 2}


def make_checkpoint(uri: str, manifest: pd.DataFrame, preprocess: PreprocessConfig, in_channels: int, steps: int = 25) -> str:
    """A tiny U-Net fitted for a few steps on the manifest's own cases, so its masks are not empty."""
    import torch

    examples = [e for _, row in manifest.iterrows() for e in iter_examples(row.to_dict(), preprocess)]
    images = torch.from_numpy(np.stack([e["image"] for e in examples]))
    masks = torch.from_numpy(np.stack([e["mask"] for e in examples]))
    torch.manual_seed(0)
    model = create_model("unet", in_channels=in_channels, classes=preprocess.num_classes, **MODEL_OPTIONS)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        optimiser.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(model(images), masks).backward()
        optimiser.step()
    spec = ModelSpec("unet", in_channels, preprocess.num_classes, MODEL_OPTIONS)
    save_model(uri, model.eval(), spec, preprocess=preprocess.model_dump(), class_names=preprocess.class_names)
    return uri


@pytest.fixture(scope="session")
def checkpoint_factory():
    """:func:`make_checkpoint`, for tests that need a checkpoint of their own."""
    return make_checkpoint


@pytest.fixture(scope="session")
def lgg(tmp_path_factory) -> dict:
    """8 LGG TIFF slice cases (2 patients x 4 slices, 64 px), their manifest and a checkpoint."""
    root = tmp_path_factory.mktemp("lgg")
    make_sample_data(str(root / "data"), "lgg", patients=2, slices=4, size=64)
    ingest("lgg", str(root / "data"), str(root / "manifest.parquet"))
    manifest = read_manifest(str(root / "manifest.parquet"))
    preprocess = PreprocessConfig(labels={"tumor": "nonzero"}, steps=[{"name": "scale"}, {"name": "resize", "size": 32}])
    checkpoint = make_checkpoint(str(root / "model"), manifest, preprocess, in_channels=3)
    return {"root": root, "manifest": str(root / "manifest.parquet"), "df": manifest, "model": checkpoint}


@pytest.fixture(scope="session")
def lgg_3d_model(lgg) -> str:
    """The LGG checkpoint with a post-processing unlike the defaults in its ``model.json``, as training saves it."""
    import json
    import shutil

    uri = str(lgg["root"] / "model-3d")
    shutil.copytree(lgg["model"], uri)
    path = lgg["root"] / "model-3d" / "model.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "postprocess": {"threshold": 0.4, "largest_component": True}}))
    return uri


#: Case ids that must not steer where outputs go (they reuse the first LGG slice's files).
HOSTILE_IDS = ["../../etc/passwd", "/abs", "a/b", "a_b"]


@pytest.fixture(scope="session")
def hostile_ids() -> list[str]:
    return list(HOSTILE_IDS)


@pytest.fixture(scope="session")
def lgg_hostile_manifest(lgg) -> str:
    """The LGG manifest plus four cases with path-like ids (each a unit of its own); 12 cases in all."""
    from raysegment.manifest import write_manifest

    first = lgg["df"].iloc[0].to_dict()
    extra = [{**first, "case_id": cid, "patient_id": f"p{i}", "volume_id": None, "split": "unlabeled"} for i, cid in enumerate(HOSTILE_IDS)]
    uri = str(lgg["root"] / "hostile.parquet")
    write_manifest(pd.concat([lgg["df"], pd.DataFrame(extra)], ignore_index=True), uri)
    return uri


@pytest.fixture(scope="session")
def reference_run(lgg, lgg_hostile_manifest, ray_session) -> dict:
    """One uninterrupted run over the 12 LGG cases: what every other run is compared with."""
    from raysegment.infer import InferConfig, run_inference

    config = InferConfig(model=lgg["model"], manifest=lgg_hostile_manifest, out=str(lgg["root"] / "reference"), batch_size=4)
    return {"config": config, "result": run_inference(config), "out": config.out}
