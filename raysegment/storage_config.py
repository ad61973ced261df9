"""How every process reaches object storage: one :class:`StorageConfig`, built once on the driver.

The driver builds it from the CLI (``--s3-endpoint`` lands in :func:`configure`) and the
environment; :meth:`StorageConfig.env` turns it into ``RAYSEGMENT_S3_*`` variables that
:func:`raysegment.runtime.worker_env` hands to every Ray task and actor, where
:func:`current_config` reads them back. A worker on a cluster node therefore talks to the same
endpoint, region and retry policy as the driver, whatever its own environment says. Credentials
are never part of it: each process takes its own from its IAM role or environment.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

#: Where the driver's configuration travels to its Ray workers: RAYSEGMENT_S3_ENDPOINT_URL, ...
ENV_PREFIX = "RAYSEGMENT_S3_"


@dataclass(frozen=True)
class StorageConfig:
    """How to reach object storage.

    Attributes:
        endpoint_url: S3 endpoint (``http://127.0.0.1:9000`` for MinIO); None for AWS itself.
        region: the region of every bucket; None resolves each bucket's own region from S3
            (:func:`raysegment.storage.bucket_region`).
        connect_timeout: seconds before an unreachable endpoint counts as down; kept short so a
            wrong endpoint fails fast instead of hanging a nightly job.
        request_timeout: seconds for one request.
        max_attempts: attempts per request; transient errors and throttling are retried with
            exponential backoff by both SDKs' standard retry strategies.
    """

    endpoint_url: str | None = None
    region: str | None = None
    connect_timeout: float = 5.0
    request_timeout: float = 60.0
    max_attempts: int = 5

    def env(self) -> dict[str, str]:
        """The ``RAYSEGMENT_S3_*`` variables that make :func:`current_config` give this config in another process.

        An unset endpoint or region goes too, as an empty value: a worker whose node sets
        ``AWS_ENDPOINT_URL_S3`` or ``AWS_REGION`` must still do as the driver does.
        """
        return {ENV_PREFIX + f.name.upper(): "" if getattr(self, f.name) is None else str(getattr(self, f.name)) for f in dataclasses.fields(self)}

#: Fields set in this process by :func:`configure`; they win over the environment.
_overrides: dict = {}


def configure(**changes) -> StorageConfig:
    """Set storage settings for this process and, through :func:`raysegment.runtime.worker_env`, its Ray workers."""
    unknown = set(changes) - {f.name for f in dataclasses.fields(StorageConfig)}
    if unknown:
        raise TypeError(f"unknown storage settings: {sorted(unknown)}")
    _overrides.update(changes)
    return current_config()


def current_config() -> StorageConfig:
    """The settings in force: :func:`configure`'s, then the driver's forwarded ``RAYSEGMENT_S3_*``, then the AWS variables."""
    values = {}
    for field in dataclasses.fields(StorageConfig):
        forwarded = os.environ.get(ENV_PREFIX + field.name.upper())
        if forwarded is not None:
            values[field.name] = (forwarded or None) if field.default is None else type(field.default)(forwarded)
    values.setdefault("endpoint_url", os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None)
    values.setdefault("region", os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None)
    return StorageConfig(**{**values, **_overrides})
