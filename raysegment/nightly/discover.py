"""What arrived in an archive: every case an importer finds, with a fingerprint of its files.

A case's fingerprint hashes the size and modification time of each of its files (on S3 the
LastModified that every upload renews), all taken from one recursive listing of the archive: no
scan is opened to decide whether it is new, so finding tonight's cases among many nights' worth of
processed ones costs one listing and one read of the ledger. Archives hold 10^5 cases, so all of it
runs column-wise in Arrow but the one SHA-256 per case.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from raysegment import storage
from raysegment.errors import RaySegmentError


def fingerprints(cases: pa.Table, listing: pa.Table) -> list[str]:
    """One digest per row of ``cases`` over its image and mask files' sizes and modification times.

    ``listing`` is :func:`raysegment.storage.listing`'s table; a file missing from it counts as
    absent (size and time -1). A case's digest is SHA-256 of ``uri\\0size\\0mtime\\n`` for each of its
    files in URI order.
    """
    images = cases["image_uris"].combine_chunks()
    masks = cases["mask_uri"].combine_chunks()
    files = pa.table({
        "row": np.concatenate([pc.list_parent_indices(images).to_numpy(), np.flatnonzero(masks.is_valid().to_numpy(zero_copy_only=False))]),
        "uri": pa.concat_arrays([pc.list_flatten(images), masks.drop_null()]),
    })
    keys = files["uri"]
    unlisted = pc.invert(pc.is_in(keys, listing["uri"]))
    if pc.any(unlisted).as_py():  # importers that build URIs from a dataset's own description: compare them normalised
        keys = pa.array([storage.normalize(uri) if miss else uri for uri, miss in zip(keys.to_pylist(), unlisted.to_pylist())], pa.string())
    position = pc.index_in(keys, value_set=listing["uri"])  # a lookup, not a join: a join's hash table costs an archive's memory
    files = files.append_column("size", pc.fill_null(listing["size"].take(position), -1))
    files = files.append_column("mtime_ns", pc.fill_null(listing["mtime_ns"].take(position), -1))
    files = files.sort_by([("row", "ascending"), ("uri", "ascending")])
    lines = pc.binary_join_element_wise(files["uri"], pc.cast(files["size"], pa.string()), pc.cast(files["mtime_ns"], pa.string()), "\0")
    offsets = np.concatenate([[0], np.cumsum(np.bincount(files["row"].to_numpy(), minlength=len(cases)))]).astype(np.int32)
    per_case = pc.binary_join(pa.ListArray.from_arrays(offsets, lines.combine_chunks()), "\n").to_pylist()
    return [hashlib.sha256(f"{text}\n".encode()).hexdigest()[:32] for text in per_case]


def discover(archive: str, kind: str) -> pd.DataFrame:
    """Manifest rows (split ``unlabeled``, sorted by case id) of every case in ``archive``, plus a ``fingerprint`` column.

    Masks found in the archive are kept, so inference reports metrics for those cases.

    Raises:
        RaySegmentError: the archive holds no case of this kind.
    """
    from raysegment.ingest import IMPORTERS

    listing = storage.listing(archive)  # one listing: the importer's files and the fingerprints' sizes and times
    found = IMPORTERS.get(kind)(archive, files=listing["uri"].to_pylist())
    if not len(found.rows):
        raise RaySegmentError(f"{archive}: no {kind} scans found ({'; '.join(found.problems[:3]) or 'empty prefix'})")
    cases = found.table("unlabeled").sort_by("case_id")
    pandas_types = {pa.int32(): pd.Int32Dtype(), pa.bool_(): pd.BooleanDtype()}  # as a manifest read back has them
    return cases.to_pandas(types_mapper=pandas_types.get).assign(fingerprint=fingerprints(cases, listing))
