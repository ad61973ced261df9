"""What arrived in an archive: every case an importer finds, with a fingerprint of its files.

A case's fingerprint hashes the size and modification time of each of its files (on S3 the
LastModified that every upload renews), all taken from one recursive listing of the archive: no
scan is opened to decide whether it is new, so finding tonight's cases among many nights' worth of
processed ones costs one listing and one read of the ledger.
"""

from __future__ import annotations

import hashlib

import pandas as pd

from raysegment import manifest as mf
from raysegment import storage
from raysegment.errors import RaySegmentError


def fingerprint(uris: list[str], stats: dict[str, tuple[int, int]]) -> str:
    """A digest of the files' sizes and modification times; a file missing from ``stats`` counts as absent."""
    lines = []
    for uri in sorted(uris):
        size, mtime = stats.get(uri) or stats.get(storage.normalize(uri), (-1, -1))  # listed URIs need no normalising
        lines.append(f"{uri}\0{size}\0{mtime}\n")
    return hashlib.sha256("".join(lines).encode()).hexdigest()[:32]


def discover(archive: str, kind: str) -> pd.DataFrame:
    """Manifest rows (split ``unlabeled``, sorted by case id) of every case in ``archive``, plus a ``fingerprint`` column.

    Masks found in the archive are kept, so inference reports metrics for those cases.

    Raises:
        RaySegmentError: the archive holds no case of this kind.
    """
    from raysegment.ingest import IMPORTERS

    stats = storage.file_stats(archive)  # one listing: the importer's files and the fingerprints' sizes and times
    found = IMPORTERS.get(kind)(archive, files=sorted(stats))
    if not found.rows:
        raise RaySegmentError(f"{archive}: no {kind} scans found ({'; '.join(found.problems[:3]) or 'empty prefix'})")
    # Fingerprinted from the importer's plain rows: archives hold 10^5 cases, and iterating the
    # Arrow-backed columns of the table costs more than the hashing.
    rows = sorted(found.rows, key=lambda row: row["case_id"])
    prints = [fingerprint(list(row["image_uris"]) + ([row["mask_uri"]] if isinstance(row.get("mask_uri"), str) else []), stats)
              for row in rows]
    table = mf.to_table(pd.DataFrame(rows).drop(columns="fixed_split", errors="ignore").assign(split="unlabeled")).to_pandas()
    return table.assign(fingerprint=prints)
