"""The embedded default: everything raysegment does, on a generated sample, on this machine.

``raysegment demo`` writes the LGG-layout sample dataset, ingests it into a patient-split manifest
and prints the manifest summary. Later stages (training on local Ray, evaluation) build on the
manifest it writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from raysegment import storage


@dataclass
class DemoConfig:
    """Where the demo works and how big its sample is."""

    workdir: str = "raysegment-demo"
    kind: str = "lgg"
    patients: int = 8
    seed: int = 0


@dataclass
class DemoResult:
    data_root: str
    manifest_uri: str
    summary: dict
    problems: list[str] = field(default_factory=list)


def run_demo(config: DemoConfig = DemoConfig()) -> DemoResult:
    """Sample data -> ingest; returns where everything went."""
    from raysegment.ingest import ingest
    from raysegment.sample_data import make_sample_data
    from raysegment.splits import SplitConfig

    data_root = storage.join(config.workdir, "data")
    if not storage.exists(data_root):  # re-running the demo reuses its sample
        make_sample_data(data_root, config.kind, patients=config.patients, seed=config.seed)
    manifest_uri = storage.join(config.workdir, "manifest.parquet")
    result = ingest(config.kind, data_root, manifest_uri, split=SplitConfig(seed=config.seed))
    return DemoResult(data_root, manifest_uri, result.summary, result.problems)
