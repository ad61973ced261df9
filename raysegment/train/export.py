"""Training checkpoints -> models: any kept epoch of a run becomes a model ``evaluate`` and ``infer`` load.

A run writes ``model_template.json`` when it starts: the ``model.json`` of its models without
weights, metrics or epoch (spec, preprocessing, post-processing, class names, channels). Exporting
an epoch is then that template, the epoch's weights (``checkpoints/epoch_NNNN/state.pt``) and its
row of the history, with no manifest to read again. ``best/`` and ``last/`` are two such exports;
:func:`resolve_model` exports any other kept epoch on first use, into ``epochs/epoch_NNNN/``.
Every command that takes a model (``evaluate``, ``infer``, ``export``, ``compare``) goes through
:func:`resolve_model`, so each accepts a model folder, a run or a run's checkpoint alike.
"""

from __future__ import annotations

import io
import json
import re
from typing import Any

from raysegment import storage
from raysegment.errors import ConfigError

TEMPLATE_FILE = "model_template.json"
CHECKPOINTS_DIR = "checkpoints"
EXPORTS_DIR = "epochs"
_EPOCH_DIR = re.compile(r"epoch_(\d{4,})$")


def checkpoint_uri(run_uri: str, epoch: int) -> str:
    """Where Ray Train keeps a run's checkpoint of ``epoch`` (``raysegment.train.loop`` names them)."""
    return storage.join(run_uri, CHECKPOINTS_DIR, f"epoch_{epoch:04d}")


def write_template(run_uri: str, spec: dict[str, Any], **metadata: Any) -> None:
    """Record what every model of the run shares (``metadata``: preprocess, postprocess, class_names, channels)."""
    storage.write_bytes(storage.join(run_uri, TEMPLATE_FILE), json.dumps({"model": spec, **metadata}, indent=2).encode())


def kept_epochs(run_uri: str) -> list[int]:
    """Epochs whose training checkpoint is still in the run folder (Ray Train keeps ``num_to_keep``)."""
    from raysegment.train.state import STATE_FILE

    epochs = []
    for uri in storage.list_dirs(storage.join(run_uri, CHECKPOINTS_DIR)):
        match = _EPOCH_DIR.search(uri.rstrip("/"))
        if match and storage.exists(storage.join(uri, STATE_FILE)):
            epochs.append(int(match.group(1)))
    return sorted(epochs)


def export_epoch(run_uri: str, epoch: int, out: str, metrics: dict[str, Any] | None = None, **extra: Any) -> str:
    """Write the model of ``epoch`` of the run at ``run_uri`` as a checkpoint folder ``out``.

    Args:
        metrics: the epoch's metrics; default its row of the checkpoint's history.
        extra: more ``model.json`` metadata (a tune trial's name).

    Raises:
        ConfigError: the run has no template, or no kept checkpoint of that epoch (naming the kept ones).
    """
    import torch

    from raysegment.models.checkpoint import ModelSpec, save_model
    from raysegment.train.state import HISTORY_FILE, STATE_FILE

    run_uri = storage.normalize(run_uri)
    try:
        template = json.loads(storage.read_bytes(storage.join(run_uri, TEMPLATE_FILE)))
    except storage.MissingObjectError:
        raise ConfigError(f"{run_uri}: no {TEMPLATE_FILE}; not a raysegment training run") from None
    source = checkpoint_uri(run_uri, epoch)
    try:
        state = torch.load(io.BytesIO(storage.read_bytes(storage.join(source, STATE_FILE))), map_location="cpu", weights_only=True)
    except storage.MissingObjectError:
        raise ConfigError(f"{run_uri}: no checkpoint of epoch {epoch} is kept (kept: {kept_epochs(run_uri) or 'none'}); "
                          "raise checkpoint.num_to_keep to keep more") from None
    if metrics is None:
        history = json.loads(storage.read_bytes(storage.join(source, HISTORY_FILE)))
        metrics = next((row for row in history if int(row["epoch"]) == epoch), {})
    spec = ModelSpec.from_dict(template.pop("model"))
    model = spec.build(pretrained=False)
    model.load_state_dict(state["model"])
    scores = {k: float(v) for k, v in metrics.items() if k.startswith(("train_", "val_")) and isinstance(v, (int, float))}
    save_model(out, model, spec, **template, metrics=scores, epoch=int(epoch), run_uri=run_uri, **extra)
    return out


def export_model(uri: str, out: str, epoch: int | None = None) -> str:
    """Write the model that ``uri`` names as a model folder ``out``; returns ``out``.

    ``uri`` is anything :func:`resolve_model` takes (a model folder, a training run or tune
    experiment, a run's ``checkpoints/epoch_NNNN``). ``epoch`` picks a kept epoch of a training run
    instead of its best model, or must match the epoch of the checkpoint that ``uri`` names.

    Raises:
        ConfigError: ``uri`` names no model, or ``epoch`` does not apply to it.
    """
    from raysegment.models.checkpoint import SPEC_FILE, WEIGHTS_FILE, read_metadata
    from raysegment.models.ensemble import ENSEMBLE, copy_ensemble

    uri = storage.normalize(uri).rstrip("/")
    if epoch is not None:
        match = _EPOCH_DIR.search(uri)
        if match and uri.rsplit("/", 2)[-2] == CHECKPOINTS_DIR:
            if int(match.group(1)) != epoch:
                raise ConfigError(f"{uri} is the checkpoint of epoch {int(match.group(1))}, not of epoch {epoch}")
            return export_epoch(uri.rsplit("/", 2)[0], epoch, out)
        if storage.exists(storage.join(uri, TEMPLATE_FILE)):
            return export_epoch(uri, epoch, out)
        raise ConfigError(f"{uri}: --epoch picks a kept epoch of a training run, and this is not one (no {TEMPLATE_FILE})")
    source = resolve_model(uri)
    if read_metadata(source)["model"]["name"] == ENSEMBLE:
        return copy_ensemble(source, out)
    # the weights first and model.json last, as save_model writes them: a readable model.json means a whole model
    storage.delete(storage.join(out, SPEC_FILE))
    storage.write_bytes(storage.join(out, WEIGHTS_FILE), storage.read_bytes(storage.join(source, WEIGHTS_FILE)))
    storage.write_bytes(storage.join(out, SPEC_FILE), storage.read_bytes(storage.join(source, SPEC_FILE)))
    return out


def _selected(run_uri: str) -> str:
    """``best`` or ``last``: the model a run folder stands for (``summary.json``'s ``selected``; ``best`` before it existed)."""
    try:
        return str(json.loads(storage.read_bytes(storage.join(run_uri, "summary.json"))).get("selected", "best"))
    except (storage.MissingObjectError, ValueError):
        return "best"


def resolve_model(uri: str) -> str:
    """The model checkpoint folder that ``uri`` names.

    ``uri`` may be a model checkpoint (``model.json``), a training run (the model its
    ``checkpoint.select`` names in ``summary.json``: ``best/`` or ``last/``), a tune experiment (its
    ``best/``), a cross-validation folder (its ``ensemble/``, :mod:`raysegment.train.folds`), or one
    of a run's training checkpoints (``RUN/checkpoints/epoch_0007``), which is exported to
    ``RUN/epochs/epoch_0007`` the first time it is asked for, or a published model (``NAME``,
    ``NAME@ALIAS``, ``NAME/versions/ID``: the version folder, :mod:`raysegment.models.versions`).

    Raises:
        ConfigError: ``uri`` is none of these, or a cross-validation folder with folds still to train.
    """
    from raysegment.models.checkpoint import SPEC_FILE
    from raysegment.models.versions import resolve
    from raysegment.train.folds import ENSEMBLE_DIR, is_folds_folder, read_folds

    uri = storage.normalize(uri).rstrip("/")
    published = resolve(uri)
    if published is not None:
        return published.uri
    if is_folds_folder(uri):
        ensemble = storage.join(uri, ENSEMBLE_DIR)
        if storage.exists(storage.join(ensemble, SPEC_FILE)):
            return ensemble
        untrained = [entry["fold"] for entry in read_folds(uri).get("fold", []) if not entry.get("model_uri")]
        raise ConfigError(f"{uri}: a cross-validation folder whose ensemble is not written yet (folds without a model: "
                          f"{untrained or 'none'}); train them with raysegment train --folds N --fold K")
    for candidate in (uri, storage.join(uri, _selected(uri))):
        if storage.exists(storage.join(candidate, SPEC_FILE)):
            return candidate
    match = _EPOCH_DIR.search(uri)
    if match and uri.rsplit("/", 2)[-2] == CHECKPOINTS_DIR:
        run_uri = uri.rsplit("/", 2)[0]
        out = storage.join(run_uri, EXPORTS_DIR, f"epoch_{int(match.group(1)):04d}")
        if not storage.exists(storage.join(out, SPEC_FILE)):
            export_epoch(run_uri, int(match.group(1)), out)
        return out
    raise ConfigError(f"{uri}: not a model checkpoint ({SPEC_FILE}), a training run with best/{SPEC_FILE}, "
                      f"or a run's {CHECKPOINTS_DIR}/epoch_NNNN")
