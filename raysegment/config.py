"""Shared loading of YAML job files into typed (pydantic) configs, with one-line errors."""

from __future__ import annotations

from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from raysegment import storage
from raysegment.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def read_yaml_mapping(uri: str) -> dict[str, Any]:
    """A YAML file (local or s3://) that must hold a mapping; an empty file is ``{}``."""
    try:
        data = yaml.safe_load(storage.read_bytes(uri)) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{uri}: not valid YAML ({' '.join(str(exc).split())[:200]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{uri}: expected a mapping of config fields, got {type(data).__name__}")
    return data


def validate(model: type[M], data: dict[str, Any], source: str) -> M:
    """``model(**data)``, with a validation failure as one ConfigError line naming ``source`` and the field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{source}: {where}: {first['msg']} ({exc.error_count()} problem(s))") from None
