"""Fixtures shared by the whole suite: one local Ray instance and one loopback S3 server per session."""

from __future__ import annotations

import os
import uuid

import pytest


@pytest.fixture(scope="session")
def ray_session(s3_server):
    """One local Ray instance for the whole session: each start costs seconds.

    It depends on the S3 server so that the server's endpoint and credentials are in the
    environment before Ray starts, and every Ray worker inherits them.
    """
    import ray

    from raysegment.runtime import init_ray

    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    if not ray.is_initialized():
        init_ray(num_cpus=2)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 API server (moto) on loopback; yields its endpoint URL.

    The endpoint and dummy credentials go into the environment, so raysegment's storage layer,
    boto3 and pyarrow all reach it exactly as they would reach MinIO.
    """
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    saved = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update(
        AWS_ENDPOINT_URL_S3=endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
    )
    yield endpoint
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def s3_bucket(s3_server):
    """A fresh bucket on the loopback server; yields its ``s3://`` URI."""
    from raysegment import storage

    name = f"test-{uuid.uuid4().hex[:12]}"
    storage.s3_client().create_bucket(Bucket=name)
    return f"s3://{name}"
