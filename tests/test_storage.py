"""Storage: local and S3 (a real S3 API server on loopback) through one URI API."""

from __future__ import annotations

import os
import threading
import time

import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from raysegment import storage, storage_config
from raysegment.errors import StorageError
from raysegment.storage_config import StorageConfig


@pytest.fixture
def configured(monkeypatch):
    """storage.configure for one test: what it sets is forgotten afterwards."""
    monkeypatch.setattr(storage_config, "_overrides", {})
    return storage.configure


@pytest.fixture(params=["local", "file", "s3"])
def root(request, tmp_path):
    if request.param == "local":
        return str(tmp_path)
    if request.param == "file":
        return f"file://{tmp_path}"
    return request.getfixturevalue("s3_bucket") + "/prefix"


def test_round_trip_bytes_and_listing(root):
    storage.write_bytes(storage.join(root, "a", "x.bin"), b"hello")
    storage.write_bytes(storage.join(root, "a", "b", "y.bin"), b"world")
    assert storage.read_bytes(storage.join(root, "a", "x.bin")) == b"hello"
    assert storage.exists(storage.join(root, "a", "b", "y.bin"))
    assert not storage.exists(storage.join(root, "a", "nope.bin"))
    listed = sorted(storage.basename(u) for u in storage.list_files(storage.join(root, "a")))
    assert listed == ["x.bin", "y.bin"]
    assert [storage.basename(u) for u in storage.list_files(storage.join(root, "a"), recursive=False)] == ["x.bin"]
    assert [storage.basename(u) for u in storage.list_dirs(storage.join(root, "a"))] == ["b"]
    files = storage.listing(storage.join(root, "a")).to_pydict()
    assert files["uri"] == storage.list_files(storage.join(root, "a")) and files["size"] == [5, 5]
    assert all(abs(t / 1e9 - time.time()) < 600 for t in files["mtime_ns"])  # the write's own time (S3: LastModified)
    storage.delete(storage.join(root, "a", "x.bin"))
    storage.delete(storage.join(root, "a", "x.bin"))  # deleting twice is not an error
    assert not storage.exists(storage.join(root, "a", "x.bin"))


def test_parquet_round_trip(root):
    table = pa.table({"case_id": ["a", "b"], "value": [1.5, 2.5]})
    uri = storage.join(root, "t.parquet")
    storage.write_table(uri, table)
    assert storage.read_table(uri).equals(table)


def test_missing_object_is_a_clear_error(root):
    uri = storage.join(root, "missing.bin")
    with pytest.raises(storage.MissingObjectError, match="missing.bin: no such file"):
        storage.read_bytes(uri)


def test_failed_atomic_write_leaves_nothing_visible(root):
    uri = storage.join(root, "partial.bin")
    storage.write_bytes(uri, b"old")
    with pytest.raises(RuntimeError):
        with storage.atomic_write(uri) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"half of the new con")
            raise RuntimeError("writer died")
    assert storage.read_bytes(uri) == b"old"
    assert [storage.basename(u) for u in storage.list_files(root)] == ["partial.bin"]


def test_local_write_is_atomic_under_concurrent_readers(tmp_path):
    """A reader never sees a half-written file: it sees the old or the new content."""
    uri = str(tmp_path / "file.bin")
    storage.write_bytes(uri, b"a" * 1_000_000)
    seen = set()
    stop = threading.Event()

    def read():
        while not stop.is_set():
            data = storage.read_bytes(uri)
            seen.add((len(data), len(set(data))))

    reader = threading.Thread(target=read)
    reader.start()
    for i in range(20):
        storage.write_bytes(uri, (b"a" if i % 2 else b"b") * 1_000_000)
    stop.set()
    reader.join()
    assert seen == {(1_000_000, 1)}  # every read saw one whole, uniform content
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp-")]


def test_s3_filesystem_is_pyarrow_and_uses_endpoint(s3_bucket, s3_server):
    fs, path = storage.filesystem(s3_bucket + "/k")
    assert isinstance(fs, pafs.S3FileSystem)
    assert path == s3_bucket[len("s3://"):] + "/k"
    storage.write_bytes(s3_bucket + "/k", b"via boto3")
    with fs.open_input_stream(path) as stream:  # the same object seen through pyarrow
        assert stream.read() == b"via boto3"


def test_normalize_and_join(tmp_path):
    assert storage.normalize(f"file://{tmp_path}/x") == f"{tmp_path}/x"
    assert storage.normalize("relative/x").startswith("/")
    assert storage.join("s3://bucket/pre", "a", "b.nii.gz") == "s3://bucket/pre/a/b.nii.gz"
    with pytest.raises(StorageError, match="unsupported URI scheme"):
        storage.normalize("gs://bucket/x")


def test_unreachable_endpoint_fails_fast_with_clear_message(monkeypatch, configured):
    configured(endpoint_url="http://127.0.0.1:9", connect_timeout=1, request_timeout=2, max_attempts=1)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    with pytest.raises(StorageError, match="s3://bucket/key"):
        storage.read_bytes("s3://bucket/key")
    with pytest.raises(StorageError, match="unreachable"):
        storage.write_bytes("s3://bucket/key", b"x")


def test_stale_temporaries_of_killed_writers_are_removed(tmp_path):
    (tmp_path / "masks").mkdir()
    stale, fresh, kept = tmp_path / "masks" / ".tmp-abc.nii.gz", tmp_path / ".tmp-def.json", tmp_path / "masks" / "a.nii.gz"
    for path in (stale, fresh, kept):
        path.write_bytes(b"x")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    assert storage.remove_stale_temporaries(str(tmp_path), older_than_s=3600) == 1
    assert not stale.exists() and fresh.exists() and kept.exists()  # a live writer's file stays
    assert storage.remove_stale_temporaries(str(tmp_path / "nowhere")) == 0


def test_config_travels_through_the_environment_whole(monkeypatch, configured):
    sent = StorageConfig(endpoint_url="http://minio:9000", region=None, connect_timeout=2.5, request_timeout=30.0, max_attempts=9)
    # A worker node's own variables lose to what the driver forwarded, an unset region included.
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://elsewhere:1")
    monkeypatch.setenv("AWS_REGION", "ap-south-1")
    for name, value in sent.env().items():
        monkeypatch.setenv(name, value)
    assert storage.current_config() == sent
    assert configured(max_attempts=2) == StorageConfig(**{**sent.__dict__, "max_attempts": 2})


@pytest.mark.s3
def test_an_unset_region_is_the_buckets_own(s3_server, monkeypatch, configured):
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    storage.s3_client(config=StorageConfig(endpoint_url=s3_server, region="eu-west-1")).create_bucket(
        Bucket="bucket-in-ireland", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    assert storage.current_config().region is None
    assert storage.bucket_region("bucket-in-ireland") == "eu-west-1"
    assert storage.s3_client("bucket-in-ireland").meta.region_name == "eu-west-1"
    storage.write_bytes("s3://bucket-in-ireland/k", b"signed for eu-west-1")
    fs, path = storage.filesystem("s3://bucket-in-ireland/k")
    assert fs.region == "eu-west-1" and storage.read_bytes("s3://bucket-in-ireland/k") == b"signed for eu-west-1"
    configured(region="us-west-2")  # a configured region is used as it is, unasked
    assert storage.filesystem("s3://bucket-in-ireland/k")[0].region == "us-west-2"


@pytest.mark.s3
def test_ray_tasks_and_actors_reach_the_endpoint_given_to_the_driver_alone(ray_session, s3_bucket, s3_server, monkeypatch, configured):
    import ray

    from raysegment.runtime import task_runtime_env

    # Defined here so that Ray ships them by value: workers cannot import this test module.
    def read_in_worker(row: dict) -> dict:
        return {"endpoint": storage.current_config().endpoint_url, "aws_variable": os.environ.get("AWS_ENDPOINT_URL_S3"),
                "content": storage.read_bytes(row["uri"]).decode()}

    class ReaderActor:
        def __call__(self, batch: dict) -> dict:
            rows = [read_in_worker({"uri": uri}) for uri in batch["uri"]]
            return {key: [row[key] for row in rows] for key in rows[0]}

    storage.write_bytes(s3_bucket + "/scan", b"from the loopback store")
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    # What --s3-endpoint does; "localhost" rather than the session's 127.0.0.1, so the workers
    # cannot have it from anywhere but this configuration.
    endpoint = s3_server.replace("127.0.0.1", "localhost")
    configured(endpoint_url=endpoint)
    env = task_runtime_env()
    # This session's workers inherited the server's variables from the test process; blanked,
    # they stand for a cluster node's workers, which never had them.
    env["env_vars"].update(AWS_ENDPOINT_URL_S3="", AWS_ENDPOINT_URL="")
    ds = ray.data.from_items([{"uri": s3_bucket + "/scan"}])
    by_task = ds.map(read_in_worker, runtime_env=env).take_all()
    by_actor = ds.map_batches(ReaderActor, batch_size=1, compute=ray.data.ActorPoolStrategy(size=1), runtime_env=env).take_all()
    for row in by_task + by_actor:
        assert row == {"endpoint": endpoint, "aws_variable": "", "content": "from the loopback store"}


def test_an_endpoint_port_with_403_in_it_is_not_access_denied():
    unreachable = OSError("AWS Error NETWORK_CONNECTION during HeadObject operation: curlCode: 7, Failed to connect to 127.0.0.1:44037")
    assert "unreachable" in str(storage._wrap("s3://b/k", unreachable))
    assert "access denied" in str(storage._wrap("s3://b/k", OSError("An error occurred (403) when calling the HeadObject operation: Forbidden")))
