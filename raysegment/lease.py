"""One writer per output prefix: a lease object with an owner and an expiry.

Two runs on one output (a retry overlapping a slow night) would both write, and the later one would
overwrite the other's ``metrics.parquet``, ``errors.parquet`` and ``run.json``. A run therefore
holds ``OUT/lease.json`` for as long as it writes there::

    {"owner": {"run_id", "host", "pid"}, "started", "expires", "ttl_s"}

Every change is a compare-and-swap, so a run never overwrites or deletes a lease it does not hold:

* S3: the lease is created with a conditional write (``PutObject`` with ``If-None-Match: *``: of
  two runs that start together exactly one succeeds); renewing it or taking over an expired one
  is a ``PutObject`` with ``If-Match`` on the ETag just read, releasing it a ``DeleteObject`` with
  ``If-Match``.
* Local folders: the same steps under an exclusive ``flock`` of ``OUT/.lease.lock`` (one machine's
  processes; a network file system's locks are not trusted).

A holder renews its lease every third of its ``ttl_s`` (:func:`hold` does it in a background
thread); a lease left by a killed run is taken over once it has expired, or at once by a run on
the same host that finds the holder's process gone (a killed run re-run by hand). Expiry compares
the holder's clock with the taker's, so hosts need clocks agreeing to well within ``ttl_s``.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from raysegment import storage
from raysegment.errors import RaySegmentError, StorageError

LEASE_FILE = "lease.json"
LOCK_FILE = ".lease.lock"
DEFAULT_TTL_S = 120.0
_CONFLICT_CODES = ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "412", "409", "404")


class LeaseHeldError(RaySegmentError):
    """Another run holds the output's lease."""

    def __init__(self, out: str, document: dict[str, Any]):
        self.out, self.holder = out, document
        owner = document.get("owner") or {}
        super().__init__(
            f"{out} is in use by run {owner.get('run_id', '?')} (host {owner.get('host', '?')}, pid {owner.get('pid', '?')}, "
            f"started {document.get('started', '?')}, lease expires {document.get('expires', '?')}); two runs on one "
            "output would overwrite each other's results: wait for that run to end, or, if it was killed, for its lease to expire"
        )

    def __reduce__(self):
        return (type(self), (self.out, self.holder))


class LeaseLostError(RaySegmentError):
    """The lease expired while its run still wrote, and another run took it over."""


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _stamp(moment: datetime.datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


def _expired(document: dict[str, Any]) -> bool:
    """Whether nobody can be renewing the lease any more: past its expiry, or its holder's process on this host is gone."""
    try:
        return datetime.datetime.fromisoformat(document["expires"]) <= _now() or not _alive(document["owner"])
    except (KeyError, TypeError, ValueError):
        return True  # not a lease this code wrote


def _alive(owner: dict[str, Any]) -> bool:
    """False only for a holder on this host whose process no longer exists."""
    if owner.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(owner["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class _S3Store:
    """Compare-and-swap on one object through S3's conditional requests; tokens are ETags."""

    def __init__(self, uri: str):
        self.uri = uri
        self.bucket, _, self.key = uri[len("s3://"):].partition("/")

    def _call(self, method: str, **kwargs):
        """The client's answer, or None when a condition failed (someone else changed the lease first)."""
        from botocore.exceptions import ClientError

        try:
            return getattr(storage.s3_client(self.bucket), method)(Bucket=self.bucket, Key=self.key, **kwargs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            if str(error.get("Code")) in _CONFLICT_CODES:
                return None
            raise StorageError(f"{self.uri}: {error.get('Code')}: {error.get('Message')}") from exc
        except Exception as exc:  # botocore raises many unrelated types for an unreachable endpoint
            raise StorageError(f"{self.uri}: {' '.join(str(exc).split())[:300]}") from exc

    def create(self, data: bytes) -> str | None:
        reply = self._call("put_object", Body=data, IfNoneMatch="*")
        return reply and reply["ETag"]

    def read(self) -> tuple[bytes, str] | None:
        reply = self._call("get_object")
        return reply and (reply["Body"].read(), reply["ETag"])

    def replace(self, data: bytes, token: str) -> str | None:
        reply = self._call("put_object", Body=data, IfMatch=token)
        return reply and reply["ETag"]

    def delete(self, token: str) -> None:
        self._call("delete_object", IfMatch=token)


class _LocalStore:
    """The same compare-and-swap on a local file, under ``flock``; tokens are content digests."""

    def __init__(self, uri: str):
        self.uri = uri
        self.lock = os.path.join(os.path.dirname(uri), LOCK_FILE)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        os.makedirs(os.path.dirname(self.uri), exist_ok=True)
        with open(self.lock, "a") as handle:  # never removed: unlinking a lock file races its next taker
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def read(self) -> tuple[bytes, str] | None:
        try:
            with open(self.uri, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        return data, hashlib.sha256(data).hexdigest()

    def _write_if(self, data: bytes, token: str | None) -> str | None:
        with self._locked():
            current = self.read()
            if (current and current[1]) != token:
                return None
            storage.write_bytes(self.uri, data)
            return hashlib.sha256(data).hexdigest()

    def create(self, data: bytes) -> str | None:
        return self._write_if(data, None)

    def replace(self, data: bytes, token: str) -> str | None:
        return self._write_if(data, token)

    def delete(self, token: str) -> None:
        with self._locked():
            current = self.read()
            if current and current[1] == token:
                os.unlink(self.uri)


@dataclass
class Lease:
    """A held lease: renew it before it expires, release it when done.

    Attributes:
        out: the output prefix it guards.
        document: what ``lease.json`` says now.
    """

    out: str
    document: dict[str, Any]
    _store: _S3Store | _LocalStore
    _token: str
    lost: LeaseLostError | None = None

    @property
    def run_id(self) -> str:
        return self.document["owner"]["run_id"]

    def renew(self) -> None:
        """Push the expiry ``ttl_s`` ahead.

        Raises:
            LeaseLostError: another run took the lease over (this one had expired).
        """
        document = {**self.document, "expires": _stamp(_now() + datetime.timedelta(seconds=self.document["ttl_s"]))}
        data = json.dumps(document).encode()
        token = self._store.replace(data, self._token) or _applied(self._store, data)
        if token is None:
            current = self._store.read()
            holder = _parse(current[0]).get("owner") if current else None
            raise LeaseLostError(f"{self.out}: the lease of run {self.run_id} expired and {'run ' + str(holder.get('run_id')) if holder else 'nobody'} "
                                 "holds it now; this run's results there may be overwritten")
        self.document, self._token = document, token

    def release(self) -> None:
        """Delete the lease if this run still holds it."""
        self._store.delete(self._token)

    def check(self) -> None:
        """Raise the :class:`LeaseLostError` the renewing thread met, if any."""
        if self.lost is not None:
            raise self.lost


def lease_uri(out: str) -> str:
    return storage.join(out, LEASE_FILE)


def _store(out: str) -> _S3Store | _LocalStore:
    uri = lease_uri(storage.normalize(out))
    return _S3Store(uri) if storage.is_s3(uri) else _LocalStore(uri)


def _parse(data: bytes) -> dict[str, Any]:
    try:
        return json.loads(data)
    except ValueError:
        return {}


def _applied(store: _S3Store | _LocalStore, data: bytes) -> str | None:
    """The lease's token if it holds exactly ``data``: a conditional write the store applied but whose answer was lost.

    The SDK then sends the write again and the store refuses the copy (412), though the lease is
    this run's: without this check a run would refuse to start, or give up, on account of itself.
    """
    current = store.read()
    return current[1] if current is not None and current[0] == data else None


def refuse_if_held(out: str) -> None:
    """Raise :class:`LeaseHeldError` if a live lease guards ``out``; reads only, so a run can refuse before it starts anything.

    :func:`acquire` decides; this only saves a run that is bound to be refused its start-up.
    """
    current = _store(out).read()
    if current is not None and not _expired(held := _parse(current[0])):
        raise LeaseHeldError(storage.normalize(out), held)


def acquire(out: str, run_id: str | None = None, ttl_s: float = DEFAULT_TTL_S) -> Lease:
    """Take the lease of ``out`` for ``ttl_s`` seconds, or take over one that expired.

    Raises:
        LeaseHeldError: another run holds an unexpired lease, naming it.
    """
    out = storage.normalize(out)
    store = _store(out)
    started = _now()
    document = {"owner": {"run_id": run_id or uuid.uuid4().hex[:12], "host": socket.gethostname(), "pid": os.getpid()},
                "started": _stamp(started), "expires": _stamp(started + datetime.timedelta(seconds=ttl_s)), "ttl_s": ttl_s}
    data = json.dumps(document).encode()
    for _ in range(3):  # the holder may release or another taker step in between our requests
        token = store.create(data) or _applied(store, data)
        if token is not None:
            return Lease(out, document, store, token)
        current = store.read()
        if current is None:
            continue
        held = _parse(current[0])
        if not _expired(held):
            raise LeaseHeldError(out, held)
        taken = {**document, "took_over_from": held.get("owner")}
        token = store.replace(json.dumps(taken).encode(), current[1]) or _applied(store, json.dumps(taken).encode())
        if token is not None:
            return Lease(out, taken, store, token)
    current = store.read()
    raise LeaseHeldError(out, _parse(current[0]) if current else {})


@contextlib.contextmanager
def hold(out: str, run_id: str | None = None, ttl_s: float = DEFAULT_TTL_S) -> Iterator[Lease]:
    """Hold the lease of ``out`` for the block, renewed in a background thread, and release it after.

    A renewal that finds the lease taken over stops renewing and leaves the error in
    ``lease.lost`` (:meth:`Lease.check` raises it); storage errors are retried at the next tick,
    as the lease stays valid until it expires.
    """
    lease = acquire(out, run_id, ttl_s)
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(ttl_s / 3):
            try:
                lease.renew()
            except LeaseLostError as exc:
                lease.lost = exc
                return
            except StorageError:
                continue

    thread = threading.Thread(target=renew, name=f"lease-{lease.run_id}", daemon=True)
    thread.start()
    try:
        yield lease
    finally:
        stop.set()
        thread.join()
        if lease.lost is None:
            with contextlib.suppress(StorageError):  # unreleased, it still expires within ttl_s
                lease.release()
