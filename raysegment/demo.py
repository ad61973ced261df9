"""The embedded default: everything raysegment does, on a generated sample, on this machine.

``raysegment demo`` writes the LGG-layout sample dataset, ingests it into a patient-split manifest,
trains a small U-Net for a few epochs on local Ray (Ray Train + Ray Data), evaluates the best model
on the held-out splits and says where the reports and figures are. The settings below are sized to
finish in a few minutes on a 2-core laptop and still segment the sample lesions well.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from raysegment import storage


@dataclass
class DemoConfig:
    """Where the demo works, how big its sample is, and how long it trains."""

    workdir: str = "raysegment-demo"
    kind: str = "lgg"
    patients: int = 8
    seed: int = 0
    train: bool = True
    epochs: int = 12
    image_size: int = 64
    base_channels: int = 8
    workers: int = 1
    address: str | None = None


@dataclass
class DemoResult:
    data_root: str
    manifest_uri: str
    summary: dict
    problems: list[str] = field(default_factory=list)
    run: object | None = None  # raysegment.train.RunResult
    evaluation: object | None = None  # raysegment.evaluate.EvalResult


def demo_job(config: DemoConfig, manifest_uri: str):
    """The training job of the demo: the defaults of ``raysegment train``, sized for a laptop (small U-Net, 64 px)."""
    from raysegment.train import load_config

    return load_config(None, {
        "out": storage.join(config.workdir, "run"),
        "data.manifest": manifest_uri,
        "data.preprocess.labels": {"tumor": "nonzero"},
        "data.preprocess.steps": [{"name": "scale", "mode": "dtype"}, {"name": "resize", "size": config.image_size}],
        "model.name": "unet",
        "model.config": {"base_channels": config.base_channels, "depth": 3},
        "optim.epochs": config.epochs,
        "optim.batch_size": 8,
        "optim.seed": config.seed,
        "postprocess.largest_component": True,
        "scaling.workers": config.workers,
        # Leave CPU for the Ray Data read tasks next to the training workers on a small machine.
        "scaling.cpus_per_worker": 0.5,
    })


def run_demo(config: DemoConfig | None = None, console=None) -> DemoResult:
    """Sample data -> ingest -> (train -> evaluate); returns where everything went."""
    config = config or DemoConfig()
    from raysegment.ingest import ingest
    from raysegment.sample_data import make_sample_data
    from raysegment.splits import SplitConfig

    data_root = storage.join(config.workdir, "data")
    if not storage.exists(data_root):  # re-running the demo reuses its sample
        make_sample_data(data_root, config.kind, patients=config.patients, seed=config.seed)
    manifest_uri = storage.join(config.workdir, "manifest.parquet")
    result = ingest(config.kind, data_root, manifest_uri, split=SplitConfig(seed=config.seed))
    out = DemoResult(data_root, manifest_uri, result.summary, result.problems)
    if not config.train:
        return out
    from raysegment.evaluate import evaluate
    from raysegment.train import train

    job = demo_job(config, manifest_uri)
    out.run = train(job, address=config.address, console=console)
    splits = [s for s in ("val", "test") if s in result.summary["splits"]]
    out.evaluation = evaluate(out.run.model_uri, manifest_uri, splits, storage.join(config.workdir, "evaluation"),
                              address=config.address)
    return out
