"""``create_loss(spec, mode=)``: a loss by name, or a weighted combination of named losses."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any, Union

from torch import nn

from raysegment.errors import ConfigError
from raysegment.losses.catalog import LOSSES
from raysegment.losses.combine import ClassIndexTarget, WeightedSum
from raysegment.losses.constants import BINARY_MODE, MODES, MULTICLASS_MODE

LossSpec = Union[str, Mapping[str, float], Sequence[Mapping[str, Any]]]


def list_losses() -> list[str]:
    """Names of the registered losses, sorted."""
    return LOSSES.names()


def create_loss(spec: LossSpec, *, mode: str = BINARY_MODE, **kwargs: Any) -> nn.Module:
    """Build a loss ``loss(logits, target) -> scalar``.

    Args:
        spec: one of

            * a name: ``"bce_dice"`` (parameters in ``kwargs``);
            * name -> weight: ``{"bce": 0.5, "dice": 0.5}``;
            * a list of terms: ``[{"name": "tversky", "weight": 1.0, "params": {"alpha": 0.3}}, ...]``.
        mode: ``"binary"``, ``"multilabel"`` or ``"multiclass"`` (:mod:`raysegment.losses.constants`,
            :func:`~raysegment.losses.constants.loss_mode`); multiclass losses take the one-hot
            target of the classes too.
        **kwargs: parameters of a single named loss.

    Raises:
        KeyError: unknown loss name (the message lists the valid ones).
        ConfigError: bad mode, parameters or spec shape.
    """
    if mode not in MODES:
        raise ConfigError(f"loss mode {mode!r} is not one of {', '.join(MODES)}")
    loss = _create(spec, mode, kwargs)
    return ClassIndexTarget(loss) if mode == MULTICLASS_MODE else loss


def _create(spec: LossSpec, mode: str, kwargs: dict[str, Any]) -> nn.Module:
    if isinstance(spec, str):
        return _build(spec, mode, kwargs)
    if kwargs:
        raise ConfigError("loss parameters go in the list form: [{'name': ..., 'weight': ..., 'params': {...}}]")
    if isinstance(spec, Mapping):
        terms = [{"name": name, "weight": weight} for name, weight in spec.items()]
    elif isinstance(spec, Sequence) and all(isinstance(term, Mapping) for term in spec):
        terms = list(spec)
    else:
        raise ConfigError(f"loss spec must be a name, a name -> weight mapping or a list of terms, got {spec!r}")
    if not terms:
        raise ConfigError("loss spec has no terms")
    losses, weights = {}, {}
    for term in terms:
        unknown = set(term) - {"name", "weight", "params"}
        if "name" not in term or unknown:
            raise ConfigError(f"loss term {dict(term)!r} needs a 'name' and may have only 'weight' and 'params'")
        label = term["name"] if term["name"] not in losses else f"{term['name']}_{len(losses)}"
        losses[label] = _build(term["name"], mode, dict(term.get("params") or {}))
        weights[label] = float(term.get("weight", 1.0))
    return WeightedSum(losses, weights)


def _build(name: str, mode: str, params: dict[str, Any]) -> nn.Module:
    builder = LOSSES.get(name)
    try:
        inspect.signature(builder).bind(mode, **params)
    except TypeError:
        valid = [p for p in inspect.signature(builder).parameters if p != "mode"]
        raise ConfigError(f"loss {name!r} has no parameter(s) {sorted(set(params) - set(valid))}; valid: {', '.join(valid)}") from None
    return builder(mode, **params)
