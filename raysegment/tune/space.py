"""Search spaces: the default one per model, the YAML form that overrides it, and Tune domains.

A space maps dotted :class:`~raysegment.train.config.TrainConfig` keys to a distribution::

    optim.lr: {loguniform: [1.0e-4, 1.0e-2]}
    optim.weight_decay: {uniform: [0.0, 1.0e-3]}
    optim.batch_size: {choice: [8, 16, 32]}
    model.config.encoder: {grid: [resnet34, vgg16]}     # every value, times --samples
    optim.epochs: 20                                   # a constant
    optim.loss: null                                   # drop this key of the default space

A user space is applied over the model's default space: its keys replace or extend the defaults,
and a key that names a whole section (``model``) also replaces the defaults below it
(``model.config.encoder``), which is how one search spans architectures with per-architecture
options (``model: {choice: [{name: unet, config: {...}}, {name: smp-Unet, config: {...}}]}``).

Choices among mappings or lists reach Tune as JSON strings, so that Optuna (which only takes
scalar categories) searches them too; :func:`decode_params` turns them back.
"""

from __future__ import annotations

import json
from typing import Any

from raysegment.config import read_yaml_mapping
from raysegment.errors import ConfigError

KINDS = ("choice", "uniform", "loguniform", "grid")

#: Searched for every model.
COMMON_SPACE: dict[str, Any] = {
    "optim.lr": {"loguniform": [1.0e-4, 1.0e-2]},
    "optim.loss": {"choice": ["dice", "bce_dice", "jaccard", "focal", "tversky"]},
    "optim.batch_size": {"choice": [8, 16, 32]},
    "optim.weight_decay": {"choice": [0.0, 1.0e-5, 1.0e-4]},
}

#: smp/timm encoders searched by default: the seed experiments' ResNets and VGG, and a small EfficientNet.
ENCODERS = ["resnet34", "resnet50", "vgg16", "efficientnet-b0"]

#: Added for models by name (``smp-*``: every smp architecture). ``unet`` and ``unetpp`` search
#: their own (classic) encoder beside the smp ones; their width (``base_channels``) is not
#: searched by default, as it applies to the classic encoder alone and every trial must get
#: options its encoder takes (a per-encoder search is a ``model.config`` choice of mappings).
MODEL_SPACES: dict[str, dict[str, Any]] = {
    "smp-*": {"model.config.encoder": {"choice": ENCODERS}},
    "unet": {"model.config.encoder": {"choice": ["classic", *ENCODERS]}},
    "unetpp": {"model.config.encoder": {"choice": ["classic", *ENCODERS]}},
}


def default_space(model: str) -> dict[str, Any]:
    """The documented default search space of ``model`` (printed by ``raysegment tune --show-space``)."""
    extra = MODEL_SPACES.get("smp-*", {}) if model.startswith("smp-") else MODEL_SPACES.get(model, {})
    return {**COMMON_SPACE, **extra}


def load_space(uri: str) -> dict[str, Any]:
    """A space YAML file (local or s3://) as a mapping of dotted keys."""
    return read_yaml_mapping(uri)


def merge_space(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` applied: ``None`` drops a key; a section key replaces the keys below it."""
    out = dict(base)
    for key, spec in changes.items():
        for old in [k for k in out if k.startswith(key + ".")]:
            del out[old]
        if spec is None:
            out.pop(key, None)
        else:
            out[key] = spec
    return out


def _is_distribution(spec: Any) -> bool:
    return isinstance(spec, dict) and len(spec) == 1 and next(iter(spec)) in KINDS


def _encode(value: Any) -> Any:
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value


def to_tune(space: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Tune's ``param_space`` for a space, and the keys whose values are JSON-encoded.

    Raises:
        ConfigError: for an unknown distribution or bad bounds, naming the key.
    """
    from ray import tune

    param_space, encoded = {}, []
    for key, spec in space.items():
        if not _is_distribution(spec):
            param_space[key] = spec
            continue
        kind, args = next(iter(spec.items()))
        if not isinstance(args, list) or not args:
            raise ConfigError(f"search space {key!r}: {kind} takes a non-empty list, got {args!r}")
        if kind in ("choice", "grid"):
            if any(isinstance(v, (dict, list)) for v in args):
                encoded.append(key)
            values = [_encode(v) for v in args]
            param_space[key] = tune.choice(values) if kind == "choice" else tune.grid_search(values)
            continue
        if len(args) != 2 or not all(isinstance(v, (int, float)) for v in args) or not args[0] < args[1]:
            raise ConfigError(f"search space {key!r}: {kind} takes [low, high] with low < high, got {args!r}")
        if kind == "loguniform" and args[0] <= 0:
            raise ConfigError(f"search space {key!r}: loguniform needs low > 0, got {args[0]!r}")
        param_space[key] = (tune.uniform if kind == "uniform" else tune.loguniform)(float(args[0]), float(args[1]))
    return param_space, encoded


def has_grid(space: dict[str, Any]) -> bool:
    return any(_is_distribution(s) and "grid" in s for s in space.values())


def decode_params(params: dict[str, Any], encoded: list[str]) -> dict[str, Any]:
    """A trial's sampled values as config overrides: JSON-encoded choices decoded, sections first."""
    out = {key: json.loads(value) if key in encoded else value for key, value in params.items()}
    # A section (``model``) must be set before the keys inside it, or it would overwrite them.
    return dict(sorted(out.items(), key=lambda item: item[0].count(".")))


def searched_keys(space: dict[str, Any]) -> list[str]:
    """The keys that vary (constants left out)."""
    return [key for key, spec in space.items() if _is_distribution(spec)]


def describe(space: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``(key, kind, values)`` rows for printing."""
    rows = []
    for key, spec in space.items():
        if _is_distribution(spec):
            kind, args = next(iter(spec.items()))
            rows.append((key, kind, ", ".join(json.dumps(a) if isinstance(a, (dict, list)) else str(a) for a in args)))
        else:
            rows.append((key, "constant", json.dumps(spec) if isinstance(spec, (dict, list)) else str(spec)))
    return rows
