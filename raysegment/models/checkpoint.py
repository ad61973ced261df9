"""The checkpoint format shared by training, tuning, evaluation and bulk inference.

A checkpoint is a directory (local path or ``s3://`` prefix) holding:

* ``model.pt``: the model's state dict on the CPU, saved with ``torch.save``, with the ``module.``
  (DDP) and ``_orig_mod.`` (torch.compile) prefixes removed, so it loads into a bare model.
* ``model.json``: ``{"format_version": 1, "model": {"name", "in_channels", "classes", "config"},
  ...}`` plus any JSON metadata the writer adds (preprocessing config, class names, channels,
  metrics).

An ensemble (:mod:`raysegment.models.ensemble`) is a ``model.json`` alone, naming member folders.

``model.json`` is written last and removed first when a checkpoint is overwritten: a directory
whose ``model.json`` is readable always holds the matching weights.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from raysegment import storage
from raysegment.errors import RaySegmentError
from raysegment.models.encoder_weights import strip_wrapper_prefixes
from raysegment.models.factory import MODELS, create_model, without_pretrained

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.pt"
SPEC_FILE = "model.json"
_RESERVED_KEYS = ("format_version", "model", "weights_sha256")


class CheckpointError(RaySegmentError):
    """A checkpoint is missing, unfinished, corrupt or does not match its model.

    Args:
        uri: the checkpoint directory.
        problem: what is wrong, in a few words.
    """

    def __init__(self, uri: str, problem: str):
        self.uri = str(uri)
        self.problem = " ".join(str(problem).split())
        super().__init__(f"{self.uri}: {self.problem}")

    def __reduce__(self):
        return (type(self), (self.uri, self.problem))


@dataclass
class ModelSpec:
    """Everything needed to rebuild a model: its registered name, channels and options."""

    name: str
    in_channels: int = 3
    classes: int = 1
    config: dict[str, Any] = field(default_factory=dict)

    def build(self, *, pretrained: bool = True) -> nn.Module:
        """The model, freshly initialised; ``pretrained=False`` skips every weight download."""
        config = self.config if pretrained else without_pretrained(self.name, self.config)
        return create_model(self.name, in_channels=self.in_channels, classes=self.classes, **config)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        return cls(
            name=str(data["name"]),
            in_channels=int(data.get("in_channels", 3)),
            classes=int(data.get("classes", 1)),
            config=dict(data.get("config") or {}),
        )


def save_model(uri: str, model: nn.Module, spec: ModelSpec, **metadata: Any) -> None:
    """Write ``model`` (weights) and ``spec`` plus ``metadata`` as a checkpoint directory at ``uri``.

    Raises:
        CheckpointError: when a metadata key is reserved or a value is not JSON-serialisable.
    """
    clash = [key for key in metadata if key in _RESERVED_KEYS]
    if clash:
        raise CheckpointError(uri, f"metadata keys {clash} are reserved")
    state = {key: value.detach().cpu() for key, value in strip_wrapper_prefixes(model.state_dict()).items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    # In model.json, so whatever identifies a model by its metadata (inference's model id, which
    # decides what a re-run skips) tells a retrained model saved at the same place from the old one.
    document = {"format_version": FORMAT_VERSION, "model": spec.to_dict(), "weights_sha256": hashlib.sha256(buffer.getvalue()).hexdigest(),
                **metadata}
    try:
        text = json.dumps(document, indent=2)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(uri, f"metadata is not JSON-serialisable ({exc})") from exc
    storage.delete(storage.join(uri, SPEC_FILE))
    storage.write_bytes(storage.join(uri, WEIGHTS_FILE), buffer.getvalue())
    storage.write_bytes(storage.join(uri, SPEC_FILE), text.encode())


def read_metadata(uri: str) -> dict[str, Any]:
    """The parsed ``model.json`` of a checkpoint, without loading the weights."""
    try:
        document = json.loads(storage.read_bytes(storage.join(uri, SPEC_FILE)))
    except storage.MissingObjectError:
        raise CheckpointError(uri, f"no {SPEC_FILE}: not a raysegment checkpoint, or an unfinished save") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(uri, f"{SPEC_FILE} is not valid JSON ({exc})") from exc
    if not isinstance(document, dict) or document.get("format_version") != FORMAT_VERSION:
        version = document.get("format_version") if isinstance(document, dict) else None
        raise CheckpointError(uri, f"{SPEC_FILE} has format_version {version!r}; this raysegment reads {FORMAT_VERSION}")
    try:
        ModelSpec.from_dict(document["model"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(uri, f"{SPEC_FILE} has no valid 'model' entry ({exc!r})") from exc
    return document


def load_model(uri: str, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model of a checkpoint and load its weights; nothing is downloaded.

    Returns:
        ``(model in eval mode on map_location, parsed model.json)``; an ensemble folder gives an
        :class:`~raysegment.models.ensemble.Ensemble` of its members.

    Raises:
        CheckpointError: naming ``uri`` when a file is missing or corrupt or the weights do not fit.
    """
    from raysegment.models.ensemble import ENSEMBLE, load_ensemble

    document = read_metadata(uri)
    spec = ModelSpec.from_dict(document["model"])
    if spec.name == ENSEMBLE:  # member folders, averaged: no weights of its own
        return load_ensemble(uri, document, map_location), document
    if spec.name not in MODELS:
        raise CheckpointError(uri, f"model {spec.name!r} is not registered; valid: {', '.join(MODELS.names())}")
    model = spec.build(pretrained=False)
    try:
        data = storage.read_bytes(storage.join(uri, WEIGHTS_FILE))
    except storage.MissingObjectError:
        raise CheckpointError(uri, f"no {WEIGHTS_FILE} next to {SPEC_FILE}") from None
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch errors of a truncated or foreign file
        raise CheckpointError(uri, f"{WEIGHTS_FILE} is corrupt ({' '.join(str(exc).split())[:200]})") from exc
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise CheckpointError(uri, f"{WEIGHTS_FILE} does not fit model {spec.name!r} ({str(exc)[:300]})") from exc
    return model.to(map_location).eval(), document
