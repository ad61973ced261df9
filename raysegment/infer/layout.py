"""Where a run's outputs live, and the per-case record that marks a case as complete.

Layout under the output root ``OUT``::

    OUT/masks/<key>.<ext>            the predicted mask, in the input's format
    OUT/probabilities/<key>.<ext>    optional per-class probability map
    OUT/records/<key>.json           written last: mask key, size and SHA-256, metrics, timings
    OUT/metrics.parquet, OUT/errors.parquet, OUT/run.json

``<key>`` comes from the case id alone: a safe slug (letters, digits, ``._-``) plus a hash of the
raw id, so ids like ``../../etc/passwd`` or ``/abs`` cannot leave ``OUT`` and ``a/b`` and ``a_b``
never share a file. A case is complete only when its record exists, names the same case and
model, and the mask it points at has exactly the recorded size and checksum; a mask without a
record (a run killed between the two writes) is simply redone.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from raysegment import storage
from raysegment.errors import RaySegmentError

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_SLUG_LENGTH = 64


def case_key(case_id: str) -> str:
    """The file stem of every output of ``case_id``: ``<slug>-<12 hex digits of its SHA-256>``."""
    slug = _UNSAFE.sub("_", str(case_id))
    slug = re.sub(r"\.{2,}", ".", slug).strip("._-")[:_SLUG_LENGTH] or "case"
    return f"{slug}-{hashlib.sha256(str(case_id).encode()).hexdigest()[:12]}"


def record_uri(out: str, key: str) -> str:
    return storage.join(out, "records", f"{key}.json")


def file_digest(data: bytes) -> dict[str, Any]:
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def write_record(out: str, key: str, record: dict[str, Any]) -> None:
    """Publish a case's record; call only after every file it names is fully written."""
    storage.write_bytes(record_uri(out, key), json.dumps(record, sort_keys=True, default=float).encode())


def completed_record(out: str, case_id: str, model_id: str) -> dict[str, Any] | None:
    """The record of ``case_id`` if the case is complete for ``model_id`` in ``out``, else None.

    Every file the record names is re-read and checked against its size and checksum, so a
    truncated, replaced or missing mask makes the case count as not done.
    """
    key = case_key(case_id)
    try:
        record = json.loads(storage.read_bytes(record_uri(out, key)))
    except storage.MissingObjectError:
        return None
    except (ValueError, UnicodeDecodeError):
        return None  # a foreign or damaged record: redo the case
    if record.get("case_id") != case_id or record.get("model_id") != model_id:
        return None
    for entry in record.get("files", []):
        try:
            data = storage.read_bytes(storage.join(out, entry["key"]))
        except RaySegmentError:
            return None
        if file_digest(data) != {"size": entry["size"], "sha256": entry["sha256"]}:
            return None
    return record
