"""The typed configuration of the nightly job, loadable from YAML (``jobs/nightly.yaml``) and the CLI."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from raysegment.config import read_yaml_mapping
from raysegment.errors import ConfigError
from raysegment.infer.config import InferConfig

# InferConfig fields a night decides itself: the manifest and output are the night's own, and the
# model is the version resolved at start.
_NIGHT_OWNED = {"model", "manifest", "out"}


class NightlyConfig(BaseModel):
    """One nightly job.

    Attributes:
        archive: dataset root in an importer's layout (local or s3://); scans arrive under it.
        kind: importer that reads it (``lgg``, ``brats``, ``lv``, ``msd``, ``nnunet``, ``table``).
        model: a model folder, a run, or a published model (``s3://models/NAME``, its
            ``production`` alias, or ``NAME@alias``); an alias is resolved once, at start.
        out: output root: ``ledger.parquet`` and one ``date=YYYY-MM-DD/`` folder per night.
        retry_failed: pick up again the cases whose last attempt with this model failed (without
            it, a failed case waits until its files change or the model does).
        infer: bulk-inference settings (:class:`raysegment.infer.InferConfig` fields other than
            ``model``, ``manifest`` and ``out``): workers, GPUs, batch size, format, ...
    """

    model_config = ConfigDict(extra="forbid")

    archive: str
    kind: str
    model: str
    out: str
    retry_failed: bool = False
    infer: dict[str, Any] = Field(default_factory=dict)

    @field_validator("infer")
    @classmethod
    def _infer_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        owned = _NIGHT_OWNED & value.keys()
        if owned:
            raise ValueError(f"{sorted(owned)} are set by the night itself (model version, manifest and output folder)")
        InferConfig(model="m", manifest="m", out="o", **value)  # fails on unknown or invalid fields now, not at night
        return value

    @field_validator("kind")
    @classmethod
    def _known_importer(cls, value: str) -> str:
        from raysegment.ingest import IMPORTERS

        if value not in IMPORTERS.names():
            raise ValueError(f"unknown importer {value!r}; one of {', '.join(IMPORTERS.names())}")
        return value

    @classmethod
    def load(cls, uri: str | None = None, *, infer: dict[str, Any] | None = None, **overrides: Any) -> NightlyConfig:
        """A config from an optional YAML file plus CLI overrides (None means "not given").

        Raises:
            ConfigError: unreadable YAML, unknown or invalid fields.
        """
        data = read_yaml_mapping(uri) if uri is not None else {}
        data.update({k: v for k, v in overrides.items() if v is not None})
        data["infer"] = {**data.get("infer", {}), **{k: v for k, v in (infer or {}).items() if v is not None}}
        try:
            return cls(**data)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"{uri or 'nightly config'}: {problems}") from None

    def infer_config(self, model: str, manifest: str, out: str) -> InferConfig:
        return InferConfig(model=model, manifest=manifest, out=out, **self.infer)
