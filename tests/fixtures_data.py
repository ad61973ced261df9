"""Sample datasets, tiny job configs and trained runs shared by the train, evaluate and compare tests.

Conftests register these fixtures by importing them. pytest keeps one instance of a session
fixture per conftest that registers it, so every builder here goes through :func:`once`, which
makes it one build per test session however many conftests ask.

Trained runs are the expensive part: each Ray Train start costs seconds of worker start-up. The
four seed LGG jobs (U-Net, U-Net++, TransUNet, smp U-Net) are trained once, made tiny, for one
epoch and then resumed for a second; the job tests, the model tests and ``compare`` all read them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from raysegment.ingest import ingest
from raysegment.sample_data import make_sample_data
from raysegment.splits import SplitConfig
from raysegment.train import apply_overrides, load_config, train
from raysegment.train.config import cli_overrides

JOBS_DIR = Path(__file__).parents[1] / "jobs"
#: The training job files (tune and inference jobs have their own tests).
JOBS = sorted(p for p in JOBS_DIR.glob("*.yaml") if not p.name.startswith(("nightly", "tune_")))

#: Overrides that make any job tiny: 32 px, few cases, 2 CPU workers (the seed jobs ask for GPUs)
#: sharing the 2 test CPUs with the Ray Data tasks (half a CPU each).
TINY = {
    "optim.batch_size": 4,
    "data.max_cases": 12,
    "scaling.workers": 2,
    "scaling.cpus_per_worker": 0.5,
    "scaling.gpus_per_worker": 0,
    "checkpoint.max_failures": 0,
}
TINY_TRANSUNET = {"hidden_size": 16, "num_layers": 1, "num_heads": 2, "mlp_ratio": 2.0, "img_size": 32, "cnn_layers": [1, 1, 1],
                  "cnn_widths": [8, 16, 32], "stem_channels": 8, "norm_groups": 4, "head_channels": 16,
                  "decoder_channels": [16, 8, 8, 8]}
#: Model options laid over a seed job's own to make its model tiny; smp encoders keep their
#: architecture (their depth does not shrink them), only the decoder is narrowed.
TINY_MODELS = {
    "unet": {"base_channels": 4, "depth": 2},
    "unetpp": {"base_channels": 4, "depth": 2},
    "transunet": TINY_TRANSUNET,
    "smp-Unet": {"decoder_channels": [16, 8, 8, 8, 8]},
    "dynunet": {"base_channels": 4, "max_channels": 8},
}
#: The seed job each trained model comes from.
MODEL_JOBS = {"unet": "lgg_seed000_unet", "unetpp": "lgg_seed000_unetpp", "transunet": "lgg_seed000_transunet",
              "smp-Unet": "lgg_seed002_unet_vgg16"}

_built: dict[tuple[str, str], object] = {}


def once(tmp_path_factory, name: str, build):
    """``build(folder)`` in a fresh temporary folder the first time ``name`` is asked for this session; then its result."""
    key = (str(tmp_path_factory.getbasetemp()), name)
    if key not in _built:
        _built[key] = build(tmp_path_factory.mktemp(name))
    return _built[key]


def make_manifest(root: Path, kind: str, **options) -> str:
    """Sample data of layout ``kind`` under ``root/data``, ingested with a 50/25/25 patient split."""
    make_sample_data(str(root / "data"), kind, seed=1, **options)
    manifest = str(root / "manifest.parquet")
    ingest(kind, str(root / "data"), manifest, split=SplitConfig(train=0.5, val=0.25, test=0.25, seed=0))
    return manifest


@pytest.fixture(scope="session")
def lgg_manifest(tmp_path_factory) -> str:
    """LGG layout: 8 patients x 6 slices of 64 px (RGB TIFF)."""
    return once(tmp_path_factory, "lgg", lambda root: make_manifest(root, "lgg", patients=8, slices=6, size=64))


@pytest.fixture(scope="session")
def brats_manifest(tmp_path_factory) -> str:
    """BraTS layout: 4 patients, 4-modality 32x32x8 NIfTI volumes."""
    return once(tmp_path_factory, "brats", lambda root: make_manifest(root, "brats", patients=4, size=32, depth=8))


@pytest.fixture(scope="session")
def lv_manifest(tmp_path_factory) -> str:
    """Cardiac LV layout: 4 patients x 3 DICOM slices of 48 px with PNG masks."""
    return once(tmp_path_factory, "lv", lambda root: make_manifest(root, "lv", patients=4, slices=3, size=48, test_patients=1))


@pytest.fixture(scope="session")
def msd_manifest(tmp_path_factory) -> str:
    """MSD layout (the hippocampus's): 6 labeled cases of 2-channel 24x24x12 volumes at 1x1x2 mm, two exclusive classes."""
    return once(tmp_path_factory, "msd", lambda root: make_manifest(root, "msd", patients=6, size=24, depth=12, test=2))


def manifest_fixture(job: Path) -> str:
    """The name of the sample-data fixture in the layout of seed job ``job``."""
    prefixes = {"brats": "brats_manifest", "lv": "lv_manifest", "hippocampus": "msd_manifest"}
    return next((fixture for prefix, fixture in prefixes.items() if job.stem.startswith(prefix)), "lgg_manifest")


def tiny_config(manifest: str, out, model: str = "unet", model_config: dict | None = None, **overrides):
    """A 32 px job on ``manifest`` with ``TINY`` settings and then ``overrides`` (dotted keys)."""
    return load_config(None, {
        **TINY,
        "out": str(out),
        "data.manifest": manifest,
        "data.preprocess.labels": {"tumor": "nonzero"},
        "data.preprocess.steps": [{"name": "scale"}, {"name": "resize", "size": 32}],
        "model.name": model,
        "model.config": model_config if model_config is not None else TINY_MODELS["unet"],
        "tracking.progress": False,
        **overrides,
    })


def tiny_job(job: Path, manifest: str, out, **overrides):
    """Seed job ``job`` made tiny, through the overrides the CLI builds (``cli_overrides`` + ``--image-size 32``).

    ``TINY`` settings and model, 32 px, one epoch, no pretrained weights (no model hub is reachable
    in tests); ``overrides`` (dotted keys) last.
    """
    base = load_config(str(job))
    sets = [f"model.config.{key}={value}" for key, value in TINY_MODELS[base.model.name].items()]
    sets += ["model.config.weights=null"] if "weights" in base.model.config else []  # a published file, for the full-size model
    options = cli_overrides(epochs=1, out=str(out), manifest=manifest, sets=sets, tensorboard=False,
                            encoder_weights="none" if "encoder_weights" in base.model.config else None)
    return load_config(str(job), {**TINY, **options, "tracking.progress": False, **overrides}, image_size=32)


def assert_resumed(first: pd.DataFrame, history: pd.DataFrame, epochs: int) -> None:
    """``history`` of a run resumed after ``first`` (its history then): it went on, epoch 1 was not re-run."""
    assert list(history["epoch"]) == list(range(1, epochs + 1))
    pd.testing.assert_frame_equal(history.iloc[:len(first)].reset_index(drop=True), first.reset_index(drop=True),
                                  check_dtype=False)


@dataclass
class TrainedJob:
    """A seed job trained one tiny epoch (``first``), then run again with two epochs (``resumed``)."""

    job: Path
    run: Path
    first: object  # raysegment.train.RunResult
    resumed: object


@pytest.fixture(scope="session")
def trained_job(ray_session, lgg_manifest, tmp_path_factory):
    """``trained_job(model) -> TrainedJob``: the model's seed LGG job, trained once per session on 2 workers."""

    def build(model: str) -> TrainedJob:
        job = JOBS_DIR / f"{MODEL_JOBS[model]}.yaml"

        def fit(root: Path) -> TrainedJob:
            config = tiny_job(job, lgg_manifest, root / model)
            first = train(config)
            resumed = train(apply_overrides(config, {"optim.epochs": 2}))  # the same command with --epochs 2
            return TrainedJob(job, root / model, first, resumed)

        return once(tmp_path_factory, f"run-{job.stem}", fit)

    return build


def zscore_inside(values: np.ndarray) -> np.ndarray:
    """Reference z-score of one channel's ``values`` (any shape) over its nonzero entries; zeros stay zero."""
    inside = values[values != 0]
    return np.where(values != 0, (values - inside.mean()) / inside.std(), 0.0)


@dataclass
class CliRun:
    """A ``raysegment train`` command run through ``CliRunner``: its run folder, MLflow store and result."""

    run: Path
    mlflow_uri: str
    result: object  # click.testing.Result


@pytest.fixture(scope="session")
def cli_train_run(ray_session, lgg_manifest, tmp_path_factory) -> CliRun:
    """One ``raysegment train`` command that the CLI and progress tests both read (each run costs seconds of start-up).

    Two epochs of a tiny U-Net on 2 workers with many options set (MLflow and TensorBoard on),
    printing a progress line on every update: stdout is no terminal under ``CliRunner``.
    """

    def build(root: Path) -> CliRun:
        from typer.testing import CliRunner

        from raysegment.cli import app

        run, store = root / "run", f"file://{root / 'mlruns'}"
        args = ["train", "--model", "unet", "--manifest", lgg_manifest, "--out", str(run), "--epochs", "2", "--batch-size", "2",
                "--lr", "0.003", "--optimizer", "adamw", "--scheduler", "onecycle", "--loss", "{bce: 0.5, dice: 0.5}",
                "--image-size", "32", "--workers", "2", "--cpus-per-worker", "0.5", "--amp", "bf16", "--seed", "3",
                "--mlflow-uri", store, "--set", "model.config={base_channels: 4, depth: 2}", "--set", "data.max_cases=12",
                "--set", "metrics=[fnr, dice]"]
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store behind this switch
            patch.setenv("RAYSEGMENT_PROGRESS_SECONDS", "0")  # every update, for a run of seconds
            result = CliRunner().invoke(app, args)
        return CliRun(run, store, result)

    return once(tmp_path_factory, "cli-train", build)
