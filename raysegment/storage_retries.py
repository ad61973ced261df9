"""S3 requests sent again after a transient failure (throttling, a 5xx, a dropped connection), and their count.

boto3 retries by itself (``standard`` mode, :func:`count_retries` counts each attempt after the
first from botocore's ``request-created`` event). pyarrow's C++ client retries out of sight and
reports nothing, so the filesystem :mod:`raysegment.storage` reads through makes one attempt per
call and :func:`retrying` repeats the transient failures, counting each. :func:`retry_count` is
the process's total: a stage that reports its retries takes the difference across its work.

Only curl's own reconnect escapes the count: it re-sends a request unseen when a kept-alive
connection dies before the first line of its answer.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# The C++ SDK's error names (and statuses of errors it has no name for) that its standard strategy retries.
_TRANSIENT = re.compile(r"AWS Error (SLOW_DOWN|THROTTLING|SERVICE_UNAVAILABLE|INTERNAL_FAILURE|NETWORK_CONNECTION|REQUEST_TIMEOUT)\b"
                        r"|HTTP status (429|5\d\d)\b")
_MAX_BACKOFF_S = 20.0

_lock = threading.Lock()
_count = 0


def retry_count() -> int:
    """S3 requests this process has sent again so far."""
    return _count


def _add() -> None:
    global _count
    with _lock:  # upload_file sends parts from several threads
        _count += 1


def count_retries(client):
    """``client`` (a boto3 S3 client), with each attempt after a request's first counted."""

    def created(request, **_) -> None:
        if request.context.get("retries", {}).get("attempt", 1) > 1:
            _add()

    client.meta.events.register("request-created.s3", created)
    return client


def is_transient(exc: BaseException) -> bool:
    """Whether a pyarrow S3 error is one its SDK's standard strategy would retry."""
    return isinstance(exc, OSError) and _TRANSIENT.search(str(exc)) is not None


def retrying(call: Callable[[], T], attempts: int) -> T:
    """``call()``, repeated up to ``attempts`` times in all while it fails transiently; each repeat counted.

    Waits as AWS's standard retry mode does: exponential backoff with full jitter, at most 20 s.
    """
    attempt = 1
    while True:
        try:
            return call()
        except OSError as exc:
            if attempt >= attempts or not is_transient(exc):
                raise
        _add()
        time.sleep(random.uniform(0, min(_MAX_BACKOFF_S, 0.05 * 2**attempt)))
        attempt += 1
