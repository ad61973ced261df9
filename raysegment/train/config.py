"""The one typed configuration of a training job, loadable from YAML and overridable from the CLI.

A job file (``jobs/*.yaml``) is a :class:`TrainConfig` written out; the CLI options and the
generic ``--set section.key=value`` overrides are applied on top of it through
:func:`apply_overrides`, and the resolved result is saved as ``config.yaml`` in the run folder, so
every run records exactly what it trained with.
"""

from __future__ import annotations

from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from raysegment import storage
from raysegment.config import read_yaml_mapping, validate
from raysegment.errors import ConfigError
from raysegment.postprocess import PostprocessConfig
from raysegment.preprocess import PreprocessConfig

LossSpec = Union[str, dict[str, float], list[dict[str, Any]]]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AugmentConfig(_Section):
    """On-the-fly augmentation of training batches (never of validation).

    Geometric transforms move image and mask together; intensity transforms touch the image only.
    Both run in Ray Data tasks ahead of the trainer: 2D examples through albumentations, 3D
    patches through MONAI where they are cut; there ``hflip`` is the probability of a flip along
    each axis and ``shift``/``vflip`` do not apply (a random patch is already shifted).
    """

    enabled: bool = True
    hflip: float = Field(0.5, ge=0, le=1, description="probability of a left-right flip")
    vflip: float = Field(0.0, ge=0, le=1, description="probability of an up-down flip")
    rotate: float = Field(15.0, ge=0, description="maximal rotation, degrees")
    shift: float = Field(0.05, ge=0, lt=1, description="maximal shift, fraction of the size")
    scale: float = Field(0.1, ge=0, lt=1, description="maximal zoom in/out, fraction")
    affine_p: float = Field(0.5, ge=0, le=1, description="probability of the rotate/shift/zoom")
    brightness: float = Field(0.1, ge=0, description="maximal brightness change")
    contrast: float = Field(0.1, ge=0, description="maximal contrast change")
    intensity_p: float = Field(0.5, ge=0, le=1, description="probability of the intensity jitter")
    # nnU-Net's other intensity augmentations (raysegment.train.intensity); unset adds nothing.
    gamma: tuple[float, float] | None = Field(None, description="range of a gamma correction, e.g. [0.7, 1.5] (nnU-Net)")
    gamma_p: float = Field(0.3, ge=0, le=1, description="probability of the gamma correction")
    noise: float = Field(0.0, ge=0, description="maximal standard deviation of additive Gaussian noise (normalised units)")
    noise_p: float = Field(0.1, ge=0, le=1, description="probability of the noise")
    blur: tuple[float, float] | None = Field(None, description="range of a Gaussian blur's sigma in pixels, e.g. [0.5, 1.0]")
    blur_p: float = Field(0.2, ge=0, le=1, description="probability of the blur")
    low_resolution: tuple[float, float] | None = Field(None, description="range of the zoom of a simulated low-resolution scan, e.g. [0.5, 1.0]")
    low_resolution_p: float = Field(0.25, ge=0, le=1, description="probability of the low-resolution simulation")


class DataSection(_Section):
    manifest: str | None = None
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    train_split: str = "train"
    val_split: str = "val"
    max_cases: int | None = Field(None, ge=1, description="use at most this many cases per split (quick runs)")
    cache: bool = Field(True, description="keep preprocessed examples in the object store across epochs")
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    patches_per_volume: int = Field(2, ge=1, description="3D models: random patches drawn from each training volume per epoch")


class ModelSection(_Section):
    """``name`` and ``config`` of a :class:`raysegment.models.checkpoint.ModelSpec`.

    ``in_channels`` and ``classes`` follow from the preprocessing (channels, labels) and the
    manifest; they are filled in when the run starts.
    """

    name: str = "unet"
    config: dict[str, Any] = Field(default_factory=dict)


class OptimSection(_Section):
    """Defaults that learn from a cold start on any binary or multi-label task: BCE + Dice (nnU-Net's
    cross-entropy + Dice; Dice alone gives vanishing gradients while the prediction is empty),
    AdamW at 1e-3 with weight decay, and a cosine decay to 1% of it.
    """

    epochs: int = Field(40, ge=1)
    batch_size: int = Field(16, ge=1, description="examples per worker and step")
    lr: float = Field(1e-3, gt=0)
    optimizer: Literal["adam", "adamw", "sgd"] = "adamw"
    weight_decay: float = Field(1e-4, ge=0)
    momentum: float = Field(0.9, ge=0, description="SGD only")
    scheduler: Literal["none", "cosine", "poly", "plateau", "onecycle"] = "cosine"
    loss: LossSpec = "bce_dice"
    amp: Literal["none", "bf16", "fp16"] = "none"
    patience: int | None = Field(None, ge=1, description="stop after this many epochs without a better val Dice")
    min_delta: float = Field(0.0, ge=0)
    grad_clip: float | None = Field(None, gt=0)
    ema: float | None = Field(None, gt=0, lt=1, description="decay per step of an exponential moving average of the weights "
                              "(0.99 averages over about the last 100 steps): validation, checkpoints and exported models use the "
                              "average; null: the weights as trained")
    seed: int = 0


class ScalingSection(_Section):
    workers: int = Field(1, ge=1)
    gpus_per_worker: float = Field(0.0, ge=0)
    cpus_per_worker: float | None = Field(None, gt=0, description="CPUs per worker; null: what fits a local machine "
                                          "(see raysegment.sizing), 1 on a cluster")


class CheckpointSection(_Section):
    monitor: Literal["val_patient_dice", "val_dice"] = Field(
        "val_patient_dice", description="what selects the best checkpoint and drives early stopping: the mean Dice per "
        "patient volume (post-processed, as evaluation scores it), or the Dice of all validation voxels pooled")
    select: Literal["best", "last"] = Field(
        "best", description="the model the run folder stands for (evaluate, infer, export --model RUN): best/, the epoch the "
        "monitored score chose, or last/, the final weights of a fixed schedule (nnU-Net's choice: a few validation patients "
        "make a noisy judge)")
    num_to_keep: int = Field(2, ge=1, description="checkpoints kept: the best by the monitored score, and always the latest")
    max_failures: int = Field(2, ge=-1, description="worker failures to recover from (-1: unlimited)")


class TrackingSection(_Section):
    mlflow_uri: str | None = None
    experiment: str = "raysegment"
    tensorboard: bool = True
    progress: bool = True


class TrainConfig(_Section):
    """A whole training job."""

    out: str | None = None
    data: DataSection = Field(default_factory=DataSection)
    model: ModelSection = Field(default_factory=ModelSection)
    optim: OptimSection = Field(default_factory=OptimSection)
    scaling: ScalingSection = Field(default_factory=ScalingSection)
    postprocess: PostprocessConfig = Field(default_factory=PostprocessConfig)
    checkpoint: CheckpointSection = Field(default_factory=CheckpointSection)
    tracking: TrackingSection = Field(default_factory=TrackingSection)
    metrics: list[str] = Field(
        default_factory=list, description="the metrics the experiment is judged by, in the order its report gives them "
        "(names in raysegment.metrics.CASE_METRICS); saved with the run's models, so `raysegment evaluate` prints these "
        "beside the loss, in this order, to set its figures beside the report's. Every metric is computed and written whatever this names")

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, metrics: list[str]) -> list[str]:
        from raysegment.metrics import CASE_METRICS

        unknown = [name for name in metrics if name not in CASE_METRICS]
        if unknown:
            raise ValueError(f"unknown metric(s) {', '.join(map(repr, unknown))}; valid: {', '.join(CASE_METRICS)}")
        return metrics

    @field_validator("model")
    @classmethod
    def _known_model(cls, model: ModelSection) -> ModelSection:
        from raysegment.models import list_models

        if model.name not in list_models():
            raise ValueError(f"unknown model {model.name!r}; valid: {', '.join(list_models())}")
        return model

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def save(self, uri: str) -> None:
        storage.write_bytes(uri, self.to_yaml().encode())


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """``data["a"]["b"] = value`` for ``key="a.b"``, creating the intermediate dicts."""
    *parents, leaf = key.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {key!r}: {part!r} is not a section")
    node[leaf] = value


def parse_set(items: list[str]) -> dict[str, Any]:
    """``["optim.lr=1e-4", "model.config.depth=3"]`` -> ``{"optim.lr": 1e-4, ...}``; values parsed as YAML."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. optim.lr=1e-4")
        out[key.strip()] = yaml.safe_load(text) if text.strip() else None
    return out


#: CLI option -> config key; the CLI is a thin layer over the same dotted overrides as ``--set``.
CLI_KEYS = {
    "out": "out", "manifest": "data.manifest", "model": "model.name", "encoder": "model.config.encoder",
    "encoder_weights": "model.config.encoder_weights", "epochs": "optim.epochs", "batch_size": "optim.batch_size",
    "lr": "optim.lr", "optimizer": "optim.optimizer", "scheduler": "optim.scheduler", "loss": "optim.loss",
    "channels": "data.preprocess.channels", "augment": "data.augment.enabled", "workers": "scaling.workers",
    "gpus_per_worker": "scaling.gpus_per_worker", "cpus_per_worker": "scaling.cpus_per_worker", "amp": "optim.amp",
    "seed": "optim.seed", "patience": "optim.patience", "max_failures": "checkpoint.max_failures",
    "mlflow_uri": "tracking.mlflow_uri", "tensorboard": "tracking.tensorboard",
}


def cli_overrides(sets: list[str] = (), **options: Any) -> dict[str, Any]:
    """Dotted overrides from CLI options (None = not given) followed by the ``--set`` items."""
    out: dict[str, Any] = {}
    for name, value in options.items():
        if value is None:
            continue
        if name == "loss":
            value = yaml.safe_load(value) if value.lstrip().startswith(("{", "[")) else value
        elif name == "channels":
            value = [c.strip() for c in value.split(",") if c.strip()]
        elif name == "encoder_weights" and value.lower() == "none":
            value = None
        out[CLI_KEYS[name]] = value
    out.update(parse_set(list(sets)))
    return out


def apply_overrides(base: TrainConfig | dict[str, Any], overrides: dict[str, Any], source: str = "config") -> TrainConfig:
    """A new, validated config: ``base`` with dotted-key ``overrides`` applied (a None value sets null)."""
    data = base.model_dump(mode="json") if isinstance(base, TrainConfig) else dict(base)
    for key, value in overrides.items():
        set_dotted(data, key, value)
    return validate_config(data, source)


def with_image_size(config: TrainConfig, size: int) -> TrainConfig:
    """Set the size of the last ``resize`` step, or append one: the model-input size of the job.

    A 3D job (``dims: 3``) has no resize: its model input is the patch, made ``size`` voxels a side.
    """
    if config.data.preprocess.dims == 3:
        return apply_overrides(config, {"data.preprocess.patch_size": [int(size)] * 3})
    steps = [dict(step) for step in config.data.preprocess.steps]
    resizes = [i for i, step in enumerate(steps) if step["name"] == "resize"]
    if resizes:
        steps[resizes[-1]]["size"] = int(size)
    else:
        steps.append({"name": "resize", "size": int(size)})
    return apply_overrides(config, {"data.preprocess.steps": steps})


def validate_config(data: dict[str, Any], source: str = "config") -> TrainConfig:
    return validate(TrainConfig, data, source)


def load_config(uri: str | None, overrides: dict[str, Any] | None = None, image_size: int | None = None) -> TrainConfig:
    """Read a YAML job file (or start from the defaults when ``uri`` is None) and apply ``overrides``.

    Args:
        image_size: see :func:`with_image_size`, applied last.
    """
    data = read_yaml_mapping(uri) if uri is not None else {}
    config = apply_overrides(data, overrides or {}, source=uri or "config")
    return with_image_size(config, image_size) if image_size else config
