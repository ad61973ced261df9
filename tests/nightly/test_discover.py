"""Finding a night's cases: fingerprints against SHA-256 of the files' own ``os.stat``."""

from __future__ import annotations

import hashlib
import os

import pyarrow as pa

from raysegment import storage
from raysegment.nightly.discover import discover, fingerprints
from raysegment.sample_data import make_sample_data


def reference(uris: list[str]) -> str:
    """The documented digest: ``uri\\0size\\0mtime_ns\\n`` per file in URI order (-1 for an absent file)."""
    lines = []
    for uri in sorted(uris):
        stat = os.stat(uri) if os.path.exists(uri) else None
        lines.append(f"{uri}\0{stat.st_size if stat else -1}\0{stat.st_mtime_ns if stat else -1}\n")
    return hashlib.sha256("".join(lines).encode()).hexdigest()[:32]


def test_each_case_hashes_its_images_and_mask_whatever_their_order_and_spelling(tmp_path):
    for i, name in enumerate(["a_t2.nii.gz", "a_t1.nii.gz", "a_seg.nii.gz", "b_t1.nii.gz"]):
        (tmp_path / name).write_bytes(b"x" * (i + 1))
    path = str(tmp_path)
    cases = [([f"{path}/a_t2.nii.gz", f"{path}/a_t1.nii.gz"], f"{path}/a_seg.nii.gz"),
             ([f"{path}/./b_t1.nii.gz"], None),  # as a dataset.json may spell it: found normalised
             ([f"{path}/gone.nii.gz"], f"{path}/a_seg.nii.gz")]
    table = pa.table({"image_uris": [images for images, _ in cases], "mask_uri": [mask for _, mask in cases]})
    assert fingerprints(table, storage.listing(path)) == [reference(images + ([mask] if mask else [])) for images, mask in cases]


def test_only_the_case_whose_file_changed_gets_a_new_fingerprint(tmp_path):
    root = make_sample_data(str(tmp_path), "lgg", patients=2, slices=3, size=32).root
    before = discover(root, "lgg")
    assert len(before) == 6 and list(before["case_id"]) == sorted(before["case_id"])
    assert set(before["split"]) == {"unlabeled"} and before["mask_uri"].notna().all()
    assert list(before["fingerprint"]) == [reference([*row.image_uris, row.mask_uri]) for row in before.itertuples()]
    changed = before["mask_uri"].iloc[4]
    os.utime(changed, ns=(os.stat(changed).st_atime_ns, os.stat(changed).st_mtime_ns + 10**9))
    (tmp_path / "kaggle_3m" / "data.csv").write_text("patient,death01\n")  # a side file is no case's
    after = discover(root, "lgg")
    assert list(after["fingerprint"] != before["fingerprint"]) == [False] * 4 + [True, False]
