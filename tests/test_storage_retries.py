"""S3 retries through a fault-injecting proxy: each fault retried once and counted once, for boto3 and pyarrow alike."""

from __future__ import annotations

import contextlib
import os

import pytest
from s3_faults import FaultProxy

from raysegment import lease, storage, storage_config
from raysegment.errors import StorageError

pytestmark = pytest.mark.s3


@pytest.fixture
def proxied(s3_server, monkeypatch):
    """``through(max_attempts=6, **proxy_options)``: storage reaches S3 through a new fault proxy, for this test."""
    monkeypatch.setattr(storage_config, "_overrides", {})
    with contextlib.ExitStack() as proxies:

        def through(max_attempts: int = 6, **kwargs) -> FaultProxy:
            proxy = proxies.enter_context(FaultProxy(s3_server, **kwargs))
            storage.configure(endpoint_url=proxy.url, max_attempts=max_attempts)
            return proxy

        yield through


def test_every_fault_is_retried_and_counted_once(s3_bucket, proxied):
    proxy = proxied(share=0.3, seed=1)
    start = storage.retry_count()
    big = os.urandom(9 * 2**20)  # above boto3's multipart threshold: create, parts, complete
    with storage.atomic_write(f"{s3_bucket}/big.bin") as tmp, open(tmp, "wb") as f:
        f.write(big)
    for i in range(8):
        uri = f"{s3_bucket}/d/{i}.bin"
        storage.write_bytes(uri, bytes([i]) * (i + 1))  # boto3
        assert storage.read_bytes(uri) == bytes([i]) * (i + 1)  # pyarrow: HEAD + GET
        assert storage.exists(uri) and not storage.exists(f"{uri}.missing")
    assert storage.read_bytes(f"{s3_bucket}/big.bin") == big
    with lease.hold(f"{s3_bucket}/out"):  # conditional writes
        pass
    assert len(storage.list_files(f"{s3_bucket}/d")) == 8
    storage.delete(f"{s3_bucket}/d/0.bin")
    assert proxy.count("503") and proxy.count("reset")
    assert storage.retry_count() - start == proxy.count()


def test_errors_that_are_not_transient_are_not_retried(s3_bucket, proxied):
    proxied(share=0.0)
    start = storage.retry_count()
    with pytest.raises(storage.MissingObjectError):
        storage.read_bytes(f"{s3_bucket}/nothing")
    assert storage.retry_count() == start


def test_a_fault_that_outlasts_the_attempts_is_one_clear_error(s3_bucket, proxied):
    storage.write_bytes(f"{s3_bucket}/x", b"x")
    proxy = proxied(max_attempts=3, share=1.0, max_per_request=100)
    start = storage.retry_count()
    with pytest.raises(StorageError, match=f"{s3_bucket}/x"):
        storage.read_bytes(f"{s3_bucket}/x")
    assert (storage.retry_count() - start, proxy.count()) == (2, 3)  # three attempts, each faulted: two retries
