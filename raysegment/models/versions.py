"""Model versions: immutable, content-addressed copies of a model folder, and aliases naming one.

A model repository is a folder (local or ``s3://``), ``s3://models/NAME`` say::

    NAME/versions/<id>/model.json, model.pt, ...   the model folder's files, never changed once written
    NAME/versions/<id>/version.json                written last: created, source, model, metrics, files
    NAME/aliases/<alias>.json                      {"alias", "version": <id>, "updated", "previous"}

``<id>`` is 16 hex digits of the SHA-256 over the model's files (relative paths and contents):
publishing the same model again gives the same version and only moves aliases, so publishing
``NAME/versions/<old id>`` with ``--alias production`` is a rollback. An ensemble is published
self-contained, its members copied into the version. An alias moves in one atomic write, so a
reader sees the old version or the new one, never a mixture.

A URI names a model in a repository as:

* ``NAME``: the version its ``production`` alias names;
* ``NAME@ALIAS``: the version ``ALIAS`` names;
* ``NAME/versions/<id>``: that version.

:func:`resolve` maps each to a :class:`ModelVersion` whose ``uri`` is the immutable version folder.
``raysegment infer`` resolves its model once, at start, records the version in ``run.json``, and
every predictor loads that folder, never the alias: re-publishing mid-run changes nothing for the run.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Any

from raysegment import storage
from raysegment.errors import ConfigError
from raysegment.models.checkpoint import SPEC_FILE, WEIGHTS_FILE, read_metadata

VERSIONS_DIR = "versions"
ALIASES_DIR = "aliases"
VERSION_FILE = "version.json"
DEFAULT_ALIAS = "production"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*$")
_ID_DIGITS = 16


@dataclass(frozen=True)
class ModelVersion:
    """One published version.

    Attributes:
        repository: the repository URI.
        version: the content id.
        created: when it was first published (UTC, ISO 8601).
        source: what was published (the URI given to ``publish``).
        model: the registered model name (``unet``, ``ensemble``...).
        metrics: the model's recorded metrics (``model.json``'s ``metrics``).
        aliases: the aliases naming it (filled by :func:`list_versions`).
        alias: the alias it was resolved through (:func:`resolve`), if any.
    """

    repository: str
    version: str
    created: str
    source: str
    model: str
    metrics: dict[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    alias: str | None = None

    @property
    def uri(self) -> str:
        """The version's model folder, which ``load_model`` reads."""
        return version_uri(self.repository, self.version)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "aliases": list(self.aliases), "uri": self.uri}


def version_uri(repository: str, version: str) -> str:
    return storage.join(repository, VERSIONS_DIR, version)


def _alias_uri(repository: str, alias: str) -> str:
    return storage.join(repository, ALIASES_DIR, f"{alias}.json")


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def _stage(model_uri: str, folder: str) -> None:
    """Write the files of the model folder ``model_uri`` into the local ``folder``; an ensemble with its members."""
    from raysegment.models.ensemble import ENSEMBLE, copy_ensemble

    if read_metadata(model_uri)["model"]["name"] == ENSEMBLE:
        copy_ensemble(model_uri, folder)
        return
    for name in (WEIGHTS_FILE, SPEC_FILE):
        storage.write_bytes(os.path.join(folder, name), storage.read_bytes(storage.join(model_uri, name)))


def _files(folder: str) -> dict[str, dict[str, Any]]:
    """Relative path -> size and SHA-256 of every file below ``folder``."""
    files = {}
    for path in storage.list_files(folder):
        with open(path, "rb") as f:
            data = f.read()
        files[os.path.relpath(path, folder).replace(os.sep, "/")] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    return files


def content_id(files: dict[str, dict[str, Any]]) -> str:
    """The version id of a model whose files are ``files`` (as :func:`_files` lists them)."""
    text = "".join(f"{name}\t{entry['sha256']}\n" for name, entry in sorted(files.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:_ID_DIGITS]


def _check_name(alias: str) -> str:
    if not _NAME.match(alias):
        raise ConfigError(f"alias {alias!r}: use letters, digits, '.', '_' and '-'")
    return alias


def publish(model_uri: str, repository: str, aliases: tuple[str, ...] | list[str] = (), source: str | None = None) -> ModelVersion:
    """Publish the model folder ``model_uri`` as a version of ``repository`` and point ``aliases`` at it.

    The version's files go first, ``model.json`` after the weights and ``version.json`` last, so a
    version with a ``version.json`` is whole; a version already published is not written again.
    Each alias is then replaced in one write.

    Args:
        model_uri: a model folder (``model.json``), as :func:`raysegment.train.export.resolve_model` returns.
        repository: the repository URI (``s3://models/NAME``).
        aliases: aliases to move to the version (``production``).
        source: what to record as the version's origin; default ``model_uri``.

    Raises:
        CheckpointError: ``model_uri`` is not a readable model folder.
        ConfigError: an alias is not a plain name.
    """
    aliases = [_check_name(a) for a in aliases]
    repository = storage.normalize(repository)
    model_uri = storage.normalize(model_uri)
    with tempfile.TemporaryDirectory(prefix="raysegment-publish-") as folder:
        _stage(model_uri, folder)
        files = _files(folder)
        version = content_id(files)
        target = version_uri(repository, version)
        if not storage.exists(storage.join(target, VERSION_FILE)):
            for name in sorted(files, key=lambda n: n.endswith(SPEC_FILE)):  # every model.json after its weights
                with open(os.path.join(folder, name), "rb") as f:
                    storage.write_bytes(storage.join(target, name), f.read())
            metadata = read_metadata(folder)
            record = {"version": version, "created": _now(), "source": source or model_uri, "model": metadata["model"]["name"],
                      "metrics": metadata.get("metrics") or {}, "files": files}
            storage.write_bytes(storage.join(target, VERSION_FILE), json.dumps(record, indent=2).encode())
    for alias in aliases:
        previous = _read_alias(repository, alias)
        document = {"alias": alias, "version": version, "updated": _now(), "previous": previous}
        storage.write_bytes(_alias_uri(repository, alias), json.dumps(document, indent=2).encode())
    return _read_version(repository, version)


def _read_version(repository: str, version: str, **extra: Any) -> ModelVersion:
    try:
        record = json.loads(storage.read_bytes(storage.join(version_uri(repository, version), VERSION_FILE)))
    except storage.MissingObjectError:
        raise ConfigError(f"{version_uri(repository, version)}: no such model version (or its publishing did not finish)") from None
    return ModelVersion(repository, version, record["created"], record["source"], record["model"], record.get("metrics") or {}, **extra)


def _read_alias(repository: str, alias: str) -> str | None:
    try:
        return json.loads(storage.read_bytes(_alias_uri(repository, alias)))["version"]
    except storage.MissingObjectError:
        return None


def aliases(repository: str) -> dict[str, str]:
    """Alias -> version id of every alias of ``repository``."""
    names = [storage.basename(u)[: -len(".json")] for u in storage.list_files(storage.join(repository, ALIASES_DIR)) if u.endswith(".json")]
    return {name: version for name in names if (version := _read_alias(repository, name)) is not None}


def list_versions(repository: str) -> list[ModelVersion]:
    """The repository's whole versions, oldest first, each with the aliases naming it."""
    repository = storage.normalize(repository)
    pointing: dict[str, list[str]] = {}
    for alias, version in aliases(repository).items():
        pointing.setdefault(version, []).append(alias)
    versions = []
    for folder in storage.list_dirs(storage.join(repository, VERSIONS_DIR)):
        version = storage.basename(folder)
        if storage.exists(storage.join(folder, VERSION_FILE)):
            versions.append(_read_version(repository, version, aliases=tuple(sorted(pointing.get(version, [])))))
    return sorted(versions, key=lambda v: (v.created, v.version))


def is_repository(uri: str) -> bool:
    return storage.is_dir(storage.join(uri, VERSIONS_DIR))


def resolve(uri: str) -> ModelVersion | None:
    """The version a repository URI names (see the module docstring); None when ``uri`` is not one.

    Raises:
        ConfigError: the repository has no such alias or version.
    """
    uri = storage.normalize(uri)
    repository, at, alias = uri.rpartition("@")
    if at and _NAME.match(alias) and is_repository(repository):
        return _by_alias(repository, alias)
    if storage.basename(storage.parent(uri)) == VERSIONS_DIR and is_repository(storage.parent(storage.parent(uri))):
        return _read_version(storage.parent(storage.parent(uri)), storage.basename(uri))
    if is_repository(uri):
        return _by_alias(uri, DEFAULT_ALIAS)
    return None


def _by_alias(repository: str, alias: str) -> ModelVersion:
    version = _read_alias(repository, alias)
    if version is None:
        known = ", ".join(sorted(aliases(repository))) or "none"
        raise ConfigError(f"{repository}: no alias {alias!r} (aliases: {known}); publish with --alias {alias}, "
                          f"or name a version as {repository}@ALIAS or {repository}/{VERSIONS_DIR}/ID")
    return _read_version(repository, version, alias=alias)
