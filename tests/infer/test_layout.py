"""Output keys stay inside the output root and never collide; completion needs a verified record."""

from __future__ import annotations

import os

from raysegment import storage
from raysegment.infer.layout import (
    case_key,
    completed_record,
    file_digest,
    record_uri,
    write_record,
)


def test_keys_cannot_escape_or_collide(tmp_path):
    ids = ["../../etc/passwd", "/abs", "a/b", "a_b", "a\\b", "..", "", "ü ñ", "x" * 500]
    keys = [case_key(i) for i in ids]
    assert len(set(keys)) == len(ids)
    for key in keys:
        assert "/" not in key and "\\" not in key and ".." not in key and not key.startswith(".")
        target = os.path.realpath(storage.join(str(tmp_path), "masks", key + ".nii.gz"))
        assert target.startswith(os.path.realpath(tmp_path / "masks") + os.sep)
    assert case_key("BraTS20_Training_001").startswith("BraTS20_Training_001-")
    assert case_key("a/b") == case_key("a/b")  # deterministic: a re-run finds its own outputs


def _complete_case(out: str, case_id: str, payload: bytes) -> None:
    key = case_key(case_id)
    storage.write_bytes(storage.join(out, "masks", key + ".tif"), payload)
    write_record(out, key, {"case_id": case_id, "model_id": "m1",
                            "files": [{"kind": "mask", "key": f"masks/{key}.tif", **file_digest(payload)}]})


def test_completed_record_checks_mask_bytes(tmp_path):
    out = str(tmp_path)
    _complete_case(out, "case-1", b"mask bytes")
    assert completed_record(out, "case-1", "m1")["case_id"] == "case-1"
    assert completed_record(out, "case-1", "other-model") is None
    assert completed_record(out, "case-2", "m1") is None
    mask = storage.join(out, "masks", case_key("case-1") + ".tif")
    storage.write_bytes(mask, b"mask bytez")  # same size, other content
    assert completed_record(out, "case-1", "m1") is None
    storage.write_bytes(mask, b"mask")  # truncated
    assert completed_record(out, "case-1", "m1") is None
    storage.delete(mask)
    assert completed_record(out, "case-1", "m1") is None


def test_mask_without_record_is_not_complete(tmp_path):
    out = str(tmp_path)
    _complete_case(out, "case-1", b"mask bytes")
    storage.delete(record_uri(out, case_key("case-1")))
    assert completed_record(out, "case-1", "m1") is None
    storage.write_bytes(record_uri(out, case_key("case-1")), b"{not json")
    assert completed_record(out, "case-1", "m1") is None
