"""A case table (``.csv`` or ``.parquet``) for data in no published layout: one row per case.

Columns (others are ignored):

* ``image``: the image file, or a list of files stacked on the channel axis (a Parquet list, or a
  JSON list ``["a.nii.gz", "b.nii.gz"]`` in a CSV cell); channels are named ``image`` (one) or
  ``image_0``, ``image_1``, ...; or instead ``image_<channel>`` columns, one file each, named by
  the column (``image_flair``, ``image_t1`` -> channels ``flair``, ``t1``);
* ``mask`` (optional): the label file; empty for unlabeled cases;
* ``patient_id`` (optional, default the case id): cases of one patient stay in one split;
* ``case_id`` (optional, default the shared part of the image file names, ``p1_flair.nii.gz`` +
  ``p1_t1.nii.gz`` -> ``p1``).

Relative paths are relative to the table's folder; any path may be local, ``file://`` or ``s3://``.
The table names no labels, so the values found in the masks become classes ``label_<value>``. A file
that is missing or unreadable is a problem (the case is left out), not an error: a table is a list of
cases, and the others are still good.
"""

from __future__ import annotations

import io
import json
import os
import re

import numpy as np
import pandas as pd

from raysegment import storage
from raysegment.ingest.base import IMPORTERS, DatasetError, Discovery
from raysegment.ingest.volumes import Case, add_cases, stem

SEPARATORS = "_-. "


def _read(src: str) -> pd.DataFrame:
    name = storage.basename(src).lower()
    if name.endswith(".csv"):
        # Everything as text: case ids such as "007" keep their zeros.
        return pd.read_csv(io.BytesIO(storage.read_bytes(src)), dtype=str, keep_default_na=False)
    if name.endswith(".parquet"):
        return storage.read_table(src).to_pandas()
    raise DatasetError(f"{src}: a case table must be .csv or .parquet")


def _empty(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or (isinstance(value, str) and not value.strip())


def _files(value) -> list[str]:
    """The file(s) of an ``image`` cell: a path, a list of paths, or a JSON list in a CSV cell."""
    if isinstance(value, str) and value.lstrip().startswith("["):
        value = json.loads(value)
    return [str(v) for v in value] if isinstance(value, (list, tuple, np.ndarray)) else [] if _empty(value) else [str(value)]


def _case_id(uris: list[str]) -> str:
    """The shared start of the files' names, cut at a separator (``p1_0000``, ``p1_0001`` -> ``p1``, not ``p1_000``)."""
    stems = [stem(u) for u in uris]
    prefix = os.path.commonprefix(stems)
    if any(len(s) > len(prefix) and s[len(prefix)] not in SEPARATORS for s in stems):
        prefix = re.sub(f"[^{re.escape(SEPARATORS)}]*$", "", prefix)
    return prefix.rstrip(SEPARATORS) or stems[0]


@IMPORTERS.register("table")
def discover(src: str, **_) -> Discovery:
    df = _read(src)
    per_channel = [c for c in df.columns if str(c).startswith("image_")]
    if ("image" in df.columns) == bool(per_channel):
        what = "both 'image' and 'image_<channel>' columns" if per_channel else "no 'image' or 'image_<channel>' column"
        raise DatasetError(f"{src}: {what} (columns: {', '.join(map(str, df.columns))})")
    base = storage.parent(src)

    def resolve(path: str) -> str:
        path = path.strip()
        return storage.normalize(path if "://" in path or os.path.isabs(path) else storage.join(base, path))

    cases = []
    for i, row in enumerate(df.to_dict("records"), start=1):
        files = [row[c] for c in per_channel] if per_channel else _files(row["image"])
        empty = [c for c, f in zip(per_channel or ["image"], files or [None]) if _empty(f)]
        if empty:
            raise DatasetError(f"{src}: row {i} has no {empty[0]!r} file")
        images = [resolve(f) for f in files]
        case_id = None if _empty(row.get("case_id")) else str(row["case_id"])
        mask = None if _empty(row.get("mask")) else resolve(str(row["mask"]))
        patient = None if _empty(row.get("patient_id")) else str(row["patient_id"])
        cases.append(Case(case_id or _case_id(images), images, mask, patient))
    ids = pd.Series([c.case_id for c in cases])
    if ids.duplicated().any():
        repeated = ids[ids.duplicated()].iloc[0]
        how = "" if "case_id" in df.columns else " (derived from the image file names; add a case_id column)"
        raise DatasetError(f"{src}: case id {repeated!r} appears more than once{how}")
    found = Discovery(labels_from=src)
    add_cases(found, cases, "table", [str(c)[len("image_"):] for c in per_channel] or None, src)
    return found
