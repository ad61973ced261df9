"""Shared importer steps: find foreground, split by patient, validate, write, summarise."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from raysegment import manifest as mf
from raysegment.errors import RaySegmentError
from raysegment.registry import Registry
from raysegment.splits import SplitConfig, assign_splits


@dataclass
class Discovery:
    """What an importer found in a dataset folder.

    Attributes:
        rows: manifest rows (without ``split`` and ``has_foreground``; a ``fixed_split`` key keeps
            a split the layout itself decides, e.g. LV ``test/``).
        problems: one line per file that was left out or needed a guess, for the summary.
    """

    rows: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass
class IngestResult:
    manifest: pd.DataFrame
    problems: list[str]
    summary: dict
    uri: str | None = None


IMPORTERS: Registry[Callable[..., Discovery]] = Registry("dataset importer")


def pseudonym(value: str, salt: str) -> str:
    """A stable patient key that does not reveal the header's PatientID."""
    return f"{salt}-{hashlib.sha256(f'{salt}:{value}'.encode()).hexdigest()[:12]}"


def _foreground(row: dict) -> tuple[bool | None, list[int] | None, int | None, str | None]:
    """(has_foreground, foreground slices, num_slices, problem) of one row's mask."""
    from raysegment.readers import read_mask, read_scan

    try:
        if row.get("mask_uri") is None:
            if row["level"] != "volume":
                return None, None, None, None
            return None, None, read_scan(row["image_uris"][0]).num_slices, None
        labels = read_mask(row["mask_uri"]).array[0]
    except RaySegmentError as exc:
        return None, None, None, str(exc)
    if row["level"] == "volume":
        per_slice = labels.reshape(-1, labels.shape[-1]).any(axis=0)
        return bool(per_slice.any()), [int(i) for i in np.flatnonzero(per_slice)], int(labels.shape[-1]), None
    return bool(labels.any()), None, None, None


def ingest(kind: str, src: str, out: str | None = None, split: SplitConfig = SplitConfig(),
           threads: int = 16, **options) -> IngestResult:
    """Import dataset ``kind`` from ``src`` and write the manifest to ``out`` (if given).

    Masks are read once (in parallel threads: the work is I/O and decompression) to record which
    cases and slices have foreground, which the stratified split and slice selection need. A case
    whose mask cannot be read is reported and left out.
    """
    found = IMPORTERS.get(kind)(src, **options)
    problems = list(found.problems)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        checked = list(pool.map(_foreground, found.rows))
    rows = []
    for row, (has_fg, fg_slices, num_slices, problem) in zip(found.rows, checked):
        if problem:
            problems.append(f"{problem} (case {row['case_id']} left out)")
            continue
        rows.append({**row, "has_foreground": has_fg, "foreground_slices": fg_slices,
                     "num_slices": num_slices if row["level"] == "volume" else None})
    df = pd.DataFrame(rows)
    if df.empty:
        raise RaySegmentError(f"{src}: no {kind} cases found ({'; '.join(problems[:3]) or 'empty folder'})")
    fixed = df.pop("fixed_split") if "fixed_split" in df else None
    df["split"] = assign_splits(df, split, fixed=fixed)
    df = df.sort_values("case_id", kind="stable").reset_index(drop=True)
    table = mf.to_table(df)
    if out is not None:
        mf.write_manifest(table, out)
    df = table.to_pandas()
    return IngestResult(df, problems, mf.summary(df), out)
