"""The Parquet manifest that training, tuning and bulk inference all read.

Schema (one row per case; see ``SCHEMA``):

==================  ==================  =========================================================
column              type                meaning
==================  ==================  =========================================================
case_id             string              unique id; also the key of every output (never a name)
patient_id          string              pseudonymous patient key; splits never share a patient
dataset             string              importer that wrote the row (``lgg``, ``brats``, ``lv``)
level               string              ``slice`` (a 2D image) or ``volume`` (a 3D scan)
image_uris          list<string>        files stacked on the channel axis, in order
channels            list<string>        one name per resulting channel
mask_uri            string, nullable    label map; null for unlabeled cases
slice_index         int32, nullable     position of a slice in its volume (along the last axis)
num_slices          int32, nullable     slices of a volume row
volume_id           string, nullable    groups slice rows of one volume (LGG: a patient's scan)
foreground_slices   list<int32>, null   volume rows: slices whose mask has foreground
split               string              ``train``, ``val``, ``test`` or ``unlabeled``
has_foreground      bool, nullable      mask has any foreground; null without a mask
format              string              ``tiff``, ``nifti``, ``dicom`` or ``png``
==================  ==================  =========================================================

A slice row whose image file is a volume is read at ``slice_index``; one whose file is 2D is read
whole. :func:`slice_view` expands volume rows into slice rows for 2D training; volume rows are what
bulk inference writes one 3D mask for.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from raysegment import storage
from raysegment.errors import ManifestError

SCHEMA = pa.schema(
    [
        ("case_id", pa.string()),
        ("patient_id", pa.string()),
        ("dataset", pa.string()),
        ("level", pa.string()),
        ("image_uris", pa.list_(pa.string())),
        ("channels", pa.list_(pa.string())),
        ("mask_uri", pa.string()),
        ("slice_index", pa.int32()),
        ("num_slices", pa.int32()),
        ("volume_id", pa.string()),
        ("foreground_slices", pa.list_(pa.int32())),
        ("split", pa.string()),
        ("has_foreground", pa.bool_()),
        ("format", pa.string()),
    ]
)
SPLITS = ("train", "val", "test", "unlabeled")
LEVELS = ("slice", "volume")
REQUIRED = ("case_id", "patient_id", "level", "image_uris", "channels", "split", "format")

SliceSelection = Literal["all", "foreground", "middle", "balanced"]


def to_table(df: pd.DataFrame) -> pa.Table:
    """A DataFrame of manifest rows as a table with exactly ``SCHEMA``; missing optional columns are null."""
    df = df.copy()
    for field in SCHEMA:
        if field.name not in df.columns:
            df[field.name] = None
    df = df[[f.name for f in SCHEMA]]
    for name in ("slice_index", "num_slices"):
        df[name] = df[name].astype("Int32")
    df["has_foreground"] = df["has_foreground"].astype("boolean")
    return validate(pa.Table.from_pandas(df, schema=SCHEMA, preserve_index=False))


def conform(table: pa.Table) -> pa.Table:
    """An Arrow table of manifest rows with exactly ``SCHEMA`` (missing optional columns null), validated."""
    for field in SCHEMA:
        if field.name not in table.column_names:
            table = table.append_column(field, pa.nulls(len(table), field.type))
    return validate(table.select(SCHEMA.names).cast(SCHEMA))


def validate(table: pa.Table, uri: str = "manifest") -> pa.Table:
    """Check a manifest against the schema and its invariants; raise ManifestError naming the problem."""
    missing = [c for c in REQUIRED if c not in table.column_names]
    if missing:
        raise ManifestError(f"{uri}: missing columns {missing}")
    df = table.select([c for c in table.column_names if c in SCHEMA.names]).to_pandas()
    for column in REQUIRED:
        if df[column].isna().any():
            raise ManifestError(f"{uri}: column {column!r} has nulls (first at row {int(df[column].isna().argmax())})")
    duplicated = df["case_id"][df["case_id"].duplicated()]
    if len(duplicated):
        raise ManifestError(f"{uri}: duplicate case_id {duplicated.iloc[0]!r}")
    bad = set(df["split"].unique()) - set(SPLITS)  # unique() first: iterating an Arrow-backed column is slow
    if bad:
        raise ManifestError(f"{uri}: unknown split values {sorted(bad)}; valid: {list(SPLITS)}")
    bad = set(df["level"].unique()) - set(LEVELS)
    if bad:
        raise ManifestError(f"{uri}: unknown level values {sorted(bad)}; valid: {list(LEVELS)}")
    labeled = df[df["split"] != "unlabeled"]
    splits_per_patient = labeled.groupby("patient_id")["split"].nunique()
    leaking = splits_per_patient[splits_per_patient > 1]
    if len(leaking):
        raise ManifestError(f"{uri}: patient {leaking.index[0]!r} appears in more than one split")
    if "mask_uri" in df and (labeled["mask_uri"].isna()).any():
        case = labeled.loc[labeled["mask_uri"].isna(), "case_id"].iloc[0]
        raise ManifestError(f"{uri}: case {case!r} is in split {labeled.set_index('case_id').loc[case, 'split']!r} but has no mask")
    return table


def write_manifest(df: pd.DataFrame | pa.Table, uri: str) -> pa.Table:
    """Validate and write a manifest (atomically) to a local path or s3:// URI."""
    table = df if isinstance(df, pa.Table) else to_table(df)
    validate(table, uri)
    storage.write_table(uri, table)
    return table


def read_manifest(uri: str) -> pd.DataFrame:
    """Read and validate a manifest; a missing or malformed file raises a one-line error naming it."""
    try:
        table = storage.read_table(uri)
    except pa.ArrowInvalid as exc:
        raise ManifestError(f"{uri}: not a Parquet file ({exc})") from exc
    validate(table, uri)
    return table.to_pandas()


def expected_slices(row) -> int | None:
    """The slices a row's image files must hold when read: ``num_slices`` of a volume row, else None.

    Readers check it (``read_scan(uri, num_slices=...)``), so a file that lost slices since
    ingest fails instead of giving a shorter mask.
    """
    count = row.get("num_slices")
    return int(count) if row.get("level") == "volume" and count is not None and not pd.isna(count) else None


def slice_view(df: pd.DataFrame, selection: SliceSelection = "all", seed: int = 0) -> pd.DataFrame:
    """Slice rows for 2D training: volume rows expanded into one row per selected slice.

    Args:
        df: manifest rows (slice and/or volume level).
        selection: ``all`` slices; ``foreground`` only slices with foreground; ``middle`` the middle
            slice of each volume; ``balanced`` every foreground slice plus as many background
            slices, drawn with ``seed``, per volume.
    Returns:
        slice-level rows with ``case_id`` ``<volume case>:<slice:03d>`` for expanded volumes.
    """
    rng = np.random.default_rng(seed)
    out: list[dict] = []
    for _, row in df[df["level"] == "volume"].iterrows():
        n = int(row["num_slices"])
        labeled = row["mask_uri"] is not None and not pd.isna(row["mask_uri"])
        fg = set(int(i) for i in row["foreground_slices"]) if labeled and row["foreground_slices"] is not None else set()
        for k in select_slices(n, fg, labeled, selection, rng):
            out.append(
                {**row.to_dict(), "case_id": f"{row['case_id']}:{k:03d}", "level": "slice", "slice_index": k,
                 "volume_id": row["case_id"], "num_slices": None, "foreground_slices": None,
                 "has_foreground": (k in fg) if labeled else None}
            )
    slices = df[df["level"] == "slice"]
    if selection != "all" and len(slices):
        slices = pd.concat([_select_slices(group, selection, rng) for _, group in slices.groupby(slices["volume_id"].fillna(slices["case_id"]))])
    expanded = pd.DataFrame(out, columns=df.columns) if out else df.iloc[0:0]
    return pd.concat([slices, expanded], ignore_index=True)


def select_slices(n: int, fg: set[int], labeled: bool, selection: str, rng: np.random.Generator) -> list[int]:
    """Indices of the slices of an ``n``-slice volume that ``selection`` keeps (``fg``: foreground slices)."""
    if selection == "all" or (not labeled and selection != "middle"):
        return list(range(n))
    if selection == "middle":
        return [n // 2]
    if selection == "foreground":
        return sorted(fg)
    if selection == "balanced":
        background = [k for k in range(n) if k not in fg]
        picked = rng.choice(background, size=min(len(fg), len(background)), replace=False) if background else []
        return sorted(fg | {int(k) for k in picked})
    raise ValueError(f"unknown slice selection {selection!r}; valid: all, foreground, middle, balanced")


def _select_slices(group: pd.DataFrame, selection: str, rng: np.random.Generator) -> pd.DataFrame:
    """The same selection for a volume stored as separate 2D slice files (LGG)."""
    order = group.sort_values("slice_index", na_position="last")
    fg = {i for i, v in enumerate(order["has_foreground"].fillna(False)) if v}
    labeled = order["mask_uri"].notna().all()
    keep = select_slices(len(order), fg, bool(labeled), selection, rng)
    return order.iloc[keep]


def summary(df: pd.DataFrame) -> dict:
    """What every ingest prints: patients, cases, slices, positives, per split."""
    slices = df.apply(lambda r: int(r["num_slices"]) if r["level"] == "volume" and not pd.isna(r["num_slices"]) else 1, axis=1)
    out = {
        "patients": int(df["patient_id"].nunique()),
        "cases": int(len(df)),
        "slices": int(slices.sum()) if len(df) else 0,
        "positives": int(df["has_foreground"].fillna(False).astype(bool).sum()),
        "splits": {},
    }
    for split in SPLITS:
        part = df[df["split"] == split]
        if len(part):
            out["splits"][split] = {
                "patients": int(part["patient_id"].nunique()),
                "cases": int(len(part)),
                "positives": int(part["has_foreground"].fillna(False).astype(bool).sum()),
            }
    return out
