"""The typed configuration of one bulk-inference run, loadable from YAML and overridable from the CLI.

URIs may hold a ``{date}`` placeholder (``s3://archive/manifests/date={date}/manifest.parquet``),
filled by :meth:`InferConfig.for_date`; the nightly job passes ``--date YYYY-MM-DD`` and the
default is today in UTC.
"""

from __future__ import annotations

import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from raysegment.config import read_yaml_mapping
from raysegment.errors import ConfigError

OutputFormat = Literal["auto", "nifti", "tiff", "png", "dicom-seg"]
_DATED_FIELDS = ("model", "manifest", "out")


class InferConfig(BaseModel):
    """One inference run.

    Attributes:
        model: checkpoint directory (``raysegment.models`` format), or a model repository's
            ``NAME``, ``NAME@ALIAS`` or ``NAME/versions/ID`` (:mod:`raysegment.models.versions`).
        manifest: Parquet manifest of the cases to segment.
        out: output root: ``masks/``, ``records/``, ``metrics.parquet``, ``errors.parquet``, ``run.json``.
        workers: predictor actors, each loading the model once. None (the default): what fits a
            local machine (:mod:`raysegment.sizing`), 1 on a cluster.
        gpus_per_worker: GPUs per predictor actor (0 runs on CPU).
        cpus_per_worker: CPUs reserved per predictor actor; on CPU its model also runs that many
            threads (rounded up), so ``workers * cpus_per_worker`` near the node's cores uses the
            whole machine while decode and write tasks fill the gaps. None (the default): what
            fits a local machine (:mod:`raysegment.sizing`), 1 on a cluster.
        batch_size: slices per forward pass.
        amp: forward passes under autocast: ``bf16`` (GPU or CPU) or ``fp16`` (GPU only; full
            precision on CPU); masks may differ from full precision in a few boundary voxels.
        format: mask format; ``auto`` writes the input's format (NIfTI for DICOM input).
        overwrite: redo cases that are already complete in ``out``.
        limit: only the first ``limit`` cases of the manifest.
        threshold: probability above which a voxel is foreground; None keeps the checkpoint's.
        largest_component: keep only each class's largest connected component (3D for volumes
            and for a patient's stacked slices); None keeps the checkpoint's.
        mirror: average the probabilities over mirrored slices (test-time augmentation); None
            keeps the checkpoint's.
        save_probabilities: also write the per-class probability map of each case.
        one_hot: write a mask's classes as a stack (4D NIfTI; TIFF/PNG bit ``k`` for class ``k``)
            rather than one label map in the source's own label values.
        overlays: draw ``OUT/overlays/<key>.png`` (image and predicted mask) for the first this
            many cases of the manifest without ground truth, which ``evaluate`` cannot show.
        address: Ray cluster to join; default ``RAY_ADDRESS`` or a local instance.
        case_timeout_s: seconds one case may spend in one stage (decoding, the model, writing; a
            unit of n cases gets n times that) before its worker process is ended as hung.
        fuse: each predictor also decodes and writes its blocks (:mod:`.chain`) instead of decode
            and write tasks beside it. None (the default): fused on a local instance whose
            predictors use no GPU, where the tasks would only add overhead; split on a cluster (its
            decode and write tasks scale out on their own) and on GPUs (which must not wait on storage).
        case_retries: how many more times the cases of a worker that died (out of memory, a crash
            in a decoder or the model) or hung are tried, each case alone, before they become error
            rows; the rest of the run goes on either way.
    """

    model_config = ConfigDict(extra="forbid")

    model: str
    manifest: str
    out: str
    workers: int | None = Field(None, ge=1)
    gpus_per_worker: float = Field(0.0, ge=0)
    cpus_per_worker: float | None = Field(None, gt=0)
    batch_size: int = Field(16, ge=1)
    amp: Literal["none", "bf16", "fp16"] = "none"
    format: OutputFormat = "auto"
    overwrite: bool = False
    limit: int | None = Field(None, ge=1)
    threshold: float | None = Field(None, gt=0, lt=1)
    largest_component: bool | None = None
    mirror: bool | None = None
    save_probabilities: bool = False
    one_hot: bool = False
    overlays: int = Field(0, ge=0)
    address: str | None = None
    case_timeout_s: float | None = Field(1800.0, gt=0)
    case_retries: int = Field(2, ge=0)
    fuse: bool | None = None

    @classmethod
    def load(cls, uri: str | None = None, *, date: str | None = None, **overrides: Any) -> InferConfig:
        """Build a config from an optional YAML file plus CLI overrides (None means "not given").

        Args:
            uri: YAML file (local or s3://) with the fields above.
            date: ``YYYY-MM-DD`` for the ``{date}`` placeholders; default today (UTC).
            **overrides: field values that replace the file's.

        Raises:
            ConfigError: unreadable YAML, unknown or invalid fields, or a bad date.
        """
        data = read_yaml_mapping(uri) if uri is not None else {}
        data.update({k: v for k, v in overrides.items() if v is not None})
        try:
            config = cls(**data)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"{uri or 'infer config'}: {problems}") from None
        return config.for_date(date)

    def for_date(self, date: str | None = None) -> InferConfig:
        """The config with ``{date}`` in its URIs replaced by ``date`` (default: today, UTC)."""
        return self.model_copy(update={f: fill_date(getattr(self, f), date) for f in _DATED_FIELDS})


def fill_date(uri: str, date: str | None = None) -> str:
    """``uri`` with every ``{date}`` replaced by ``date`` (``YYYY-MM-DD``; default today, UTC)."""
    if date is None:
        date = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    try:
        datetime.date.fromisoformat(date)
    except ValueError:
        raise ConfigError(f"--date {date!r}: expected YYYY-MM-DD") from None
    return uri.replace("{date}", date)
