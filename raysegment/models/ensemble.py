"""Ensembles: several model folders averaged into one model that every consumer loads unchanged.

Cross-validation leaves K models, each trained on a different (K-1)/K of the patients; averaging
their probabilities, as nnU-Net does with its five folds, predicts better than any one of them and
uses every patient. Rather than teach ``evaluate``, ``infer``, the nightly job and
:mod:`raysegment.predict` about several models, an ensemble is a model folder like any other:
its ``model.json`` names the model ``ensemble`` and lists the member folders in
``model.config.members``, beside the preprocessing, post-processing, class names and channels the
members share; it has no weights of its own. :func:`raysegment.models.load_model` loads it into an
:class:`Ensemble`, whose forward returns the logits of the averaged probabilities (``logit(p)`` for
regions, ``log(p)`` for exclusive classes), so the consumers' own sigmoid or softmax gives back
exactly the mean, and threshold, largest component and mirroring apply to it unchanged.

Members are recorded relative to the ensemble's folder when they share its storage, so a folds
folder can be moved or synced (``s3://`` to a laptop) whole. Each member's ``model.json`` digest is
recorded too: an ensemble whose members were retrained since it was written refuses to load rather
than silently becoming another model (``infer`` would count masks of the old one as done).
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from raysegment import storage
from raysegment.models.checkpoint import FORMAT_VERSION, SPEC_FILE, CheckpointError, read_metadata

ENSEMBLE = "ensemble"
#: ``model.json`` entries the members must agree on: the same input and the same outputs, or
#: their probabilities do not describe the same thing and averaging them means nothing.
SHARED = ("preprocess", "channels", "class_names")
#: Probabilities are kept this far from 0 and 1 before ``logit``, so no logit is infinite (float32
#: still represents ``1 - EPS``); the error this adds is below what a threshold can see.
EPS = 1e-7


class Ensemble(nn.Module):
    """The members' probabilities averaged, returned as logits.

    Args:
        members: models mapping the same input to the same outputs, in eval mode.
        exclusive: the outputs are exclusive classes (softmax over background and the classes)
            rather than regions (one sigmoid each).
    Shape:
        ``(N, C_in, *spatial)`` -> ``(N, C_out, *spatial)`` float32: ``logit(mean sigmoid)`` or ``log(mean softmax)``.
    """

    def __init__(self, members: Sequence[nn.Module], exclusive: bool = False):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        self.exclusive = exclusive

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = None
        for member in self.members:
            logits = member(x).float()  # averaged in float32 whatever precision the members ran in
            prob = torch.softmax(logits, dim=1) if self.exclusive else torch.sigmoid(logits)
            total = prob if total is None else total + prob
        mean = total / len(self.members)
        if self.exclusive:  # softmax(log p) = p / sum(p) = p: the background channel is kept for that
            return torch.log(mean.clamp_min(torch.finfo(mean.dtype).tiny))
        return torch.logit(mean, eps=EPS)


def member_uri(ensemble_uri: str, ref: str) -> str:
    """The URI of a member recorded as ``ref`` in the ensemble at ``ensemble_uri`` (relative refs resolved against it)."""
    if storage.is_s3(ref) or "://" in ref or os.path.isabs(ref):
        return storage.normalize(ref)
    base = storage.normalize(ensemble_uri)
    if storage.is_s3(base):
        bucket, _, key = base[len("s3://"):].partition("/")
        path = posixpath.normpath(posixpath.join("/", key, ref)).lstrip("/")
        return f"s3://{bucket}/{path}"
    return os.path.normpath(os.path.join(base, ref))


def _reference(ensemble_uri: str, member: str) -> str:
    """``member`` relative to the ensemble's folder when both are on the same storage (filesystem or bucket)."""
    base, member = storage.normalize(ensemble_uri), storage.normalize(member)
    if storage.is_s3(base) != storage.is_s3(member):
        return member
    if storage.is_s3(base):
        (bucket, _, key), (member_bucket, _, member_key) = (u[len("s3://"):].partition("/") for u in (base, member))
        return posixpath.relpath("/" + member_key, "/" + key) if bucket == member_bucket else member
    return os.path.relpath(member, base)


def digest(metadata: dict[str, Any]) -> str:
    """SHA-256 of a parsed ``model.json``: a member's identity, whatever the file's formatting."""
    return hashlib.sha256(json.dumps(metadata, sort_keys=True).encode()).hexdigest()


def exclusive_outputs(metadata: dict[str, Any]) -> bool:
    """Whether a model's outputs are exclusive classes, decided as ``evaluate`` and ``infer`` decide it."""
    from raysegment.preprocess import PreprocessConfig

    classes = int(metadata["model"].get("classes", 1))
    return PreprocessConfig.model_validate(metadata.get("preprocess") or {}).for_outputs(classes).exclusive


def _check_member(uri: str, member: str, metadata: dict[str, Any], first: str, reference: dict[str, Any]) -> None:
    """Raise a one-line CheckpointError naming ``member`` when it differs from the first member in what they must share."""
    for key in ("in_channels", "classes"):
        if metadata["model"].get(key) != reference["model"].get(key):
            raise CheckpointError(member, f"cannot join ensemble {uri}: {key} {metadata['model'].get(key)} differs from "
                                          f"{reference['model'].get(key)} of {first}")
    for key in SHARED:
        if metadata.get(key) != reference.get(key):
            raise CheckpointError(member, f"cannot join ensemble {uri}: its {key} differs from that of {first}; "
                                          "members must share preprocessing, channels and classes")


def write_ensemble(uri: str, members: Sequence[str], postprocess: dict[str, Any] | None = None, **metadata: Any) -> str:
    """Write the ensemble of the model folders ``members`` as a model folder ``uri``; returns ``uri``.

    Args:
        members: model folders (``model.json`` + ``model.pt``, or other ensembles).
        postprocess: the ensemble's post-processing; default the first member's.
        metadata: more ``model.json`` entries (the folds it was made from).

    Raises:
        CheckpointError: naming the member that is missing or does not match the first one.
    """
    if not members:
        raise CheckpointError(uri, "an ensemble needs at least one member")
    uri = storage.normalize(uri)
    documents = [read_metadata(storage.normalize(m)) for m in members]
    for member, document in zip(members[1:], documents[1:]):
        _check_member(uri, member, document, members[0], documents[0])
    first = documents[0]
    spec = {"name": ENSEMBLE, "in_channels": first["model"].get("in_channels", 3), "classes": first["model"].get("classes", 1),
            "config": {"members": [_reference(uri, m) for m in members], "digests": [digest(d) for d in documents]}}
    shared = {key: first[key] for key in SHARED if key in first}
    document = {"format_version": FORMAT_VERSION, "model": spec, **shared,
                "postprocess": postprocess if postprocess is not None else first.get("postprocess", {}), **metadata}
    storage.write_bytes(storage.join(uri, SPEC_FILE), json.dumps(document, indent=2).encode())
    return uri


def load_ensemble(uri: str, document: dict[str, Any], map_location: str | torch.device = "cpu") -> nn.Module:
    """The :class:`Ensemble` of the ensemble folder ``uri`` (``document``: its parsed ``model.json``), in eval mode.

    Raises:
        CheckpointError: a member is missing, unreadable, changed since the ensemble was written, or
            does not match the others.
    """
    from raysegment.models.checkpoint import load_model

    config = document["model"].get("config") or {}
    refs, digests = list(config.get("members") or []), list(config.get("digests") or [])
    if not refs or len(digests) != len(refs):
        raise CheckpointError(uri, f"{SPEC_FILE} of an ensemble needs model.config.members and one digest per member")
    models, first = [], None
    for ref, expected in zip(refs, digests):
        member = member_uri(uri, ref)
        model, metadata = load_model(member, map_location=map_location)
        if digest(metadata) != expected:
            raise CheckpointError(member, f"changed since ensemble {uri} was written; write the ensemble again "
                                          "(raysegment train --folds does when its folds finish)")
        if first is None:
            first = (member, metadata)
        _check_member(uri, member, metadata, *first)
        models.append(model)
    return Ensemble(models, exclusive=exclusive_outputs(document)).to(map_location).eval()


def copy_ensemble(source: str, out: str) -> str:
    """Write the ensemble at ``source`` as a self-contained model folder ``out``: its members copied
    into ``out/members/<i>`` and named relative to it, so ``out`` can be published on its own."""
    from raysegment.models.checkpoint import WEIGHTS_FILE

    source, out = storage.normalize(source), storage.normalize(out)
    document = read_metadata(source)
    members = []
    for i, ref in enumerate(document["model"]["config"]["members"]):
        member, target = member_uri(source, ref), storage.join(out, "members", str(i))
        if read_metadata(member)["model"]["name"] == ENSEMBLE:
            copy_ensemble(member, target)
        else:  # weights first, model.json last, as save_model writes them
            storage.delete(storage.join(target, SPEC_FILE))
            storage.write_bytes(storage.join(target, WEIGHTS_FILE), storage.read_bytes(storage.join(member, WEIGHTS_FILE)))
            storage.write_bytes(storage.join(target, SPEC_FILE), storage.read_bytes(storage.join(member, SPEC_FILE)))
        members.append(target)
    extra = {k: v for k, v in document.items() if k not in ("format_version", "model", "postprocess", *SHARED)}
    return write_ensemble(out, members, postprocess=document.get("postprocess"), **extra)
