"""One URI-based storage API: local paths, ``file://`` and ``s3://``.

Everything in raysegment reads and writes through here. :func:`filesystem` resolves a URI to a
``pyarrow.fs.FileSystem`` plus a path inside it; the same object goes to ``ray.data.read_parquet``
and ``ray.train.RunConfig(storage_filesystem=...)``.

Writes are all-or-nothing: locally a temporary file in the target folder is renamed over the
target; on S3 the object is sent in one ``PutObject`` (or a multipart upload, which only becomes
visible when it completes), never through an open stream that would publish a partial object if
the writer died mid-way.

How S3 is reached (endpoint of an S3-compatible store, region, timeouts, retries) is one
:class:`StorageConfig` (:mod:`raysegment.storage_config`), the same in the driver and every Ray
worker. Without a configured region, each bucket's own region is asked of S3 once per process.
Requests the functions here send again after a transient failure are counted (:func:`retry_count`,
:mod:`raysegment.storage_retries`); a :func:`filesystem` given to Ray Data or Train retries uncounted.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import posixpath
import re
import tempfile
import time
from collections.abc import Iterator
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from raysegment.errors import StorageError
from raysegment.storage_config import StorageConfig, configure, current_config  # noqa: F401  (re-exported: the CLI configures storage here)
from raysegment.storage_retries import count_retries, retry_count, retrying  # noqa: F401  (retry_count re-exported)


class MissingObjectError(StorageError, FileNotFoundError):
    """The URI names nothing."""


def is_s3(uri: str) -> bool:
    return str(uri).startswith("s3://")


def normalize(uri: str | os.PathLike) -> str:
    """``file://`` URIs and relative paths become absolute local paths; ``s3://`` stays as is.

    Absolute paths matter because Ray tasks may run in another working directory.
    """
    uri = os.fspath(uri)
    if is_s3(uri):
        return uri.rstrip("/") if uri.count("/") > 3 else uri
    if uri.startswith("file://"):
        uri = urlparse(uri).path
    elif "://" in uri:
        raise StorageError(f"{uri}: unsupported URI scheme (use a local path, file:// or s3://)")
    return os.path.abspath(os.path.expanduser(uri))


def join(base: str, *parts: str) -> str:
    """Join path parts onto a URI with ``/``, whatever the scheme."""
    base = normalize(base)
    if is_s3(base):
        return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])
    return os.path.join(base, *parts)


def parent(uri: str) -> str:
    uri = normalize(uri)
    return uri.rsplit("/", 1)[0] if is_s3(uri) else os.path.dirname(uri)


def basename(uri: str) -> str:
    return posixpath.basename(normalize(uri).rstrip("/"))


def _split_s3(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.lstrip("/")


#: Used where neither the configuration nor S3 names a region; AWS's own fallback.
FALLBACK_REGION = "us-east-1"

_bucket_regions: dict[tuple[StorageConfig, str], str] = {}


def bucket_region(bucket: str, config: StorageConfig | None = None) -> str:
    """The region to sign requests to ``bucket`` for: the configured one, else the bucket's own.

    A bucket outside the SDKs' default region is otherwise reached with the wrong signature (or a
    redirect per request). S3 names a bucket's region in the ``x-amz-bucket-region`` header of
    HeadBucket, even on a 403; only regions S3 named are remembered, so a bucket created later is
    asked again.
    """
    config = config or current_config()
    if config.region:
        return config.region
    key = (config, bucket)
    if key not in _bucket_regions:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = _s3_client(config, FALLBACK_REGION).head_bucket(Bucket=bucket)
        except ClientError as exc:
            response = exc.response
        except BotoCoreError:  # unreachable endpoint: the request that follows reports it
            return FALLBACK_REGION
        region = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("x-amz-bucket-region")
        if not region:
            return FALLBACK_REGION
        _bucket_regions[key] = region
    return _bucket_regions[key]


@functools.lru_cache(maxsize=16)
def _s3_filesystem(config: StorageConfig, region: str, attempts: int) -> pafs.S3FileSystem:
    kwargs = dict(
        region=region,
        connect_timeout=config.connect_timeout,
        request_timeout=config.request_timeout,
        retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=attempts),
    )
    if config.endpoint_url:
        parsed = urlparse(config.endpoint_url if "://" in config.endpoint_url else f"https://{config.endpoint_url}")
        kwargs.update(endpoint_override=parsed.netloc, scheme=parsed.scheme)
    return pafs.S3FileSystem(**kwargs)


@functools.lru_cache(maxsize=16)
def _s3_client(config: StorageConfig, region: str):
    import boto3
    from botocore.config import Config

    return count_retries(boto3.client(
        "s3",
        endpoint_url=config.endpoint_url,
        region_name=region,
        config=Config(
            connect_timeout=config.connect_timeout,
            read_timeout=config.request_timeout,
            retries={"max_attempts": config.max_attempts, "mode": "standard"},
        ),
    ))


def s3_client(bucket: str | None = None, config: StorageConfig | None = None):
    """A boto3 S3 client for what pyarrow lacks (atomic uploads, error codes), signed for ``bucket``'s region."""
    config = config or current_config()
    return _s3_client(config, bucket_region(bucket, config) if bucket else config.region or FALLBACK_REGION)


def filesystem(uri: str, config: StorageConfig | None = None) -> tuple[pafs.FileSystem, str]:
    """Resolve a URI to ``(filesystem, path inside it)``; on S3 pyarrow retries as configured, uncounted."""
    config = config or current_config()
    return _resolve(uri, config, config.max_attempts)


def _resolve(uri: str, config: StorageConfig, attempts: int) -> tuple[pafs.FileSystem, str]:
    uri = normalize(uri)
    if is_s3(uri):
        bucket, key = _split_s3(uri)
        return _s3_filesystem(config, bucket_region(bucket, config), attempts), f"{bucket}/{key}".rstrip("/")
    return pafs.LocalFileSystem(), uri


def _call(uri: str, operation):
    """``operation(filesystem, path)`` for ``uri``, pyarrow making one attempt a call: transient failures are retried, and counted, here."""
    config = current_config()
    fs, path = _resolve(uri, config, attempts=1)
    return retrying(lambda: operation(fs, path), config.max_attempts)


def _wrap(uri: str, exc: BaseException) -> StorageError:
    text = " ".join(str(exc).split())
    if isinstance(exc, FileNotFoundError) or "NoSuchKey" in text or "Path does not exist" in text:
        return MissingObjectError(f"{uri}: no such file or object")
    if "NoSuchBucket" in text:
        return MissingObjectError(f"{uri}: no such bucket")
    # Before the status codes: an endpoint's port (127.0.0.1:44037) may contain "403".
    if "curlCode" in text or "Could not connect" in text or "Connect timeout" in text or "EndpointConnectionError" in type(exc).__name__:
        return StorageError(f"{uri}: storage endpoint unreachable ({text[:200]})")
    if "AccessDenied" in text or "InvalidAccessKeyId" in text or "SignatureDoesNotMatch" in text or re.search(r"(?<![\d.:])403(?!\d)", text):
        return StorageError(f"{uri}: access denied (check the AWS credentials and the bucket policy)")
    return StorageError(f"{uri}: {text[:300]}")


def read_bytes(uri: str) -> bytes:
    """The whole content of a file or object."""
    def read(fs: pafs.FileSystem, path: str) -> bytes:
        # A random-access file reads the object in one GET (a stream takes one per 256 KiB, and a
        # retry would repeat them all); nor does it gunzip ".gz" names, and readers want the file's bytes.
        with fs.open_input_file(path) as file:
            return file.read()

    try:
        return _call(uri, read)
    except (OSError, ValueError) as exc:
        if isinstance(exc, IsADirectoryError) or (not is_s3(uri) and os.path.isdir(normalize(uri))):
            raise StorageError(f"{uri}: is a folder, not a file") from exc
        raise _wrap(uri, exc) from exc


def write_bytes(uri: str, data: bytes) -> None:
    """Write ``data`` to ``uri`` all-or-nothing."""
    uri = normalize(uri)
    if is_s3(uri):
        bucket, key = _split_s3(uri)
        try:
            s3_client(bucket).put_object(Bucket=bucket, Key=key, Body=data)
        except Exception as exc:  # botocore raises many unrelated types
            raise _wrap(uri, exc) from exc
        return
    with atomic_write(uri) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


@contextlib.contextmanager
def atomic_write(uri: str) -> Iterator[str]:
    """Yield a local temporary path to write; it is published at ``uri`` only if the block succeeds.

    Libraries that insist on a filename (nibabel, matplotlib, highdicom) write there.
    """
    uri = normalize(uri)
    suffix = "".join(_suffixes(uri))
    if is_s3(uri):
        fd, tmp = tempfile.mkstemp(suffix=suffix)
    else:
        os.makedirs(os.path.dirname(uri), exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=suffix, prefix=".tmp-", dir=os.path.dirname(uri))
    os.close(fd)
    try:
        yield tmp
        if is_s3(uri):
            bucket, key = _split_s3(uri)
            try:
                # upload_file uses multipart for large files; an unfinished multipart upload is never visible.
                s3_client(bucket).upload_file(tmp, bucket, key)
            except Exception as exc:
                raise _wrap(uri, exc) from exc
        else:
            os.replace(tmp, uri)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _suffixes(uri: str) -> list[str]:
    name = basename(uri)
    return [s for s in (".nii.gz",) if name.endswith(s)] or ([os.path.splitext(name)[1]] if "." in name else [])


@contextlib.contextmanager
def local_file(uri: str) -> Iterator[str]:
    """A local path holding the content of ``uri`` (a download for S3, the file itself locally)."""
    uri = normalize(uri)
    if not is_s3(uri):
        if not os.path.exists(uri):
            raise MissingObjectError(f"{uri}: no such file or object")
        yield uri
        return
    data = read_bytes(uri)
    fd, tmp = tempfile.mkstemp(suffix="".join(_suffixes(uri)))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        yield tmp
    finally:
        os.unlink(tmp)


def exists(uri: str) -> bool:
    return _info(uri).type != pafs.FileType.NotFound


def is_dir(uri: str) -> bool:
    return _info(uri).type == pafs.FileType.Directory


def _info(uri: str, below: bool = False, recursive: bool = True):
    """The ``FileInfo`` of ``uri``; with ``below``, the list of those under it."""
    try:
        return _call(uri, lambda fs, path: fs.get_file_info(pafs.FileSelector(path, recursive=recursive, allow_not_found=True) if below else path))
    except OSError as exc:
        raise _wrap(uri, exc) from exc


def list_files(uri: str, recursive: bool = True) -> list[str]:
    """URIs of the files below ``uri``, sorted; hidden temporaries of unfinished writes are left out."""
    return listing(uri, recursive)["uri"].to_pylist()


def listing(uri: str, recursive: bool = True) -> pa.Table:
    """``uri``, ``size`` and ``mtime_ns`` (S3: LastModified) of the files below ``uri``, sorted by URI, from one listing.

    Hidden temporaries of unfinished writes are left out. Built column-wise: archives hold 10^5
    files, and a Python object per file is most of what listing them costs.
    """
    uri = normalize(uri)
    infos = [info for info in _info(uri, below=True, recursive=recursive) if info.type == pafs.FileType.File]
    prefix = "s3://" if is_s3(uri) else ""
    files = pa.table({"uri": pa.array([f"{prefix}{info.path}" for info in infos], pa.string()),
                      "size": pa.array([info.size for info in infos], pa.int64()),
                      "mtime_ns": pa.array([info.mtime_ns or 0 for info in infos], pa.int64())})
    return files.filter(pc.invert(pc.match_substring_regex(files["uri"], r"/\.tmp-[^/]*$"))).sort_by("uri")


def remove_stale_temporaries(uri: str, older_than_s: float = 3600.0) -> int:
    """Delete the hidden ``.tmp-*`` files that killed writers left below a local ``uri``; returns how many.

    Only files untouched for ``older_than_s`` go, so a writer still running elsewhere keeps its
    own. S3 needs nothing: an upload is invisible until complete, and a bucket lifecycle rule
    aborts unfinished multipart uploads.
    """
    uri = normalize(uri)
    if is_s3(uri) or not os.path.isdir(uri):
        return 0
    cutoff, removed = time.time() - older_than_s, 0
    for folder, _, names in os.walk(uri):
        for name in names:
            path = os.path.join(folder, name)
            if name.startswith(".tmp-") and os.path.getmtime(path) < cutoff:
                with contextlib.suppress(FileNotFoundError):  # another cleaner got there first
                    os.unlink(path)
                    removed += 1
    return removed


def list_dirs(uri: str) -> list[str]:
    """URIs of the immediate sub-folders (or S3 prefixes) of ``uri``, sorted."""
    uri = normalize(uri)
    infos = _info(uri, below=True, recursive=False)
    return sorted(f"s3://{i.path}" if is_s3(uri) else i.path for i in infos if i.type == pafs.FileType.Directory)


def delete(uri: str) -> None:
    """Remove a file or object; nothing happens if it is not there."""
    with contextlib.suppress(FileNotFoundError):
        try:
            _call(uri, lambda fs, path: fs.delete_file(path))
        except OSError as exc:
            if isinstance(exc, FileNotFoundError) or "NoSuchKey" in str(exc) or "does not exist" in str(exc):
                return
            raise _wrap(uri, exc) from exc


def read_table(uri: str):
    """Read a Parquet file as a ``pyarrow.Table``."""
    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(read_bytes(uri)))


def write_table(uri: str, table, **kwargs) -> None:
    """Write a ``pyarrow.Table`` as Parquet, all-or-nothing."""
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(table, buffer, **kwargs)
    write_bytes(uri, buffer.getvalue())
