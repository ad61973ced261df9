"""Shared importer steps: find foreground, split by patient, validate, write, summarise."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import pandas as pd
import pyarrow as pa

from raysegment import manifest as mf
from raysegment.errors import RaySegmentError
from raysegment.ingest.labels import check_labels, with_labels
from raysegment.registry import Registry
from raysegment.splits import SplitConfig, assign_splits


@dataclass
class Discovery:
    """What an importer found in a dataset folder.

    Attributes:
        rows: manifest rows (without ``split`` and ``has_foreground``; a ``fixed_split`` key keeps
            a split the layout itself decides, e.g. LV ``test/``): dicts, or one Arrow table with
            those columns from importers whose layouts run to 10^5 files, built column-wise.
        problems: one line per file that was left out or needed a guess, for the summary.
        labels: foreground label definitions ``{name: values}`` the dataset declares (see
            :mod:`.labels`); checked against the label files and stored in the manifest.
        labels_from: the file that declares them; set without ``labels``, the values found in
            the label files are named ``label_<value>``. None: the importer says nothing about labels.
    """

    rows: list[dict] | pa.Table = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    labels: dict[str, list[int]] | None = None
    labels_from: str | None = None

    def records(self) -> list[dict]:
        return self.rows.to_pylist() if isinstance(self.rows, pa.Table) else self.rows

    def table(self, split: str) -> pa.Table:
        """The rows as a validated manifest table, every case in ``split`` (the layout's own split dropped)."""
        if isinstance(self.rows, pa.Table):
            rows = self.rows.drop_columns([c for c in ("fixed_split",) if c in self.rows.column_names])
            return mf.conform(rows.append_column("split", pa.array([split] * len(rows), pa.string())))
        return mf.to_table(pd.DataFrame(self.rows).drop(columns="fixed_split", errors="ignore").assign(split=split))


class DatasetError(RaySegmentError):
    """A dataset's own description (``dataset.json``, a case table) is missing or contradicts its files."""


@dataclass
class IngestResult:
    manifest: pd.DataFrame
    problems: list[str]
    summary: dict
    uri: str | None = None
    labels: dict[str, list[int]] | None = None


#: ``discover(src, files=None, **options) -> Discovery``. ``files``: the URIs below ``src`` when the
#: caller has listed them already (the nightly's discovery lists an archive once for its
#: fingerprints); an importer that lists ``src`` itself uses them instead.
IMPORTERS: Registry[Callable[..., Discovery]] = Registry("dataset importer")


def pseudonym(value: str, salt: str) -> str:
    """A stable patient key that does not reveal the header's PatientID."""
    return f"{salt}-{hashlib.sha256(f'{salt}:{value}'.encode()).hexdigest()[:12]}"


def _foreground(row: dict, values: bool = False) -> tuple[dict, set[int] | None, str | None]:
    """(has_foreground / foreground_slices / num_slices, the label values if ``values``, problem) of one row's mask."""
    from raysegment.readers import read_mask, read_scan

    facts = {"has_foreground": None, "foreground_slices": None, "num_slices": row.get("num_slices")}
    try:
        if row.get("mask_uri") is None:
            if row["level"] == "volume" and facts["num_slices"] is None:  # importers that read headers already know it
                facts["num_slices"] = read_scan(row["image_uris"][0]).num_slices
            return facts, None, None
        labels = read_mask(row["mask_uri"]).array[0]
    except RaySegmentError as exc:
        return facts, None, str(exc)
    found = {int(v) for v in np.unique(labels)} if values else None
    if row["level"] == "volume":
        per_slice = labels.reshape(-1, labels.shape[-1]).any(axis=0)
        facts.update(has_foreground=bool(per_slice.any()), foreground_slices=[int(i) for i in np.flatnonzero(per_slice)],
                     num_slices=int(labels.shape[-1]))
    else:
        facts["has_foreground"] = bool(labels.any())
    return facts, found, None


def ingest(kind: str, src: str, out: str | None = None, split: SplitConfig = SplitConfig(),
           threads: int = 16, **options) -> IngestResult:
    """Import dataset ``kind`` from ``src`` and write the manifest to ``out`` (if given).

    Masks are read once (in parallel threads: the work is I/O and decompression) to record which
    cases and slices have foreground, which the stratified split and slice selection need, and
    which label values occur. A case whose mask cannot be read is reported and left out.
    """
    found = IMPORTERS.get(kind)(src, **options)
    problems, records = list(found.problems), found.records()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        checked = list(pool.map(partial(_foreground, values=found.labels_from is not None), records))
    rows, seen = [], {}
    for row, (facts, values, problem) in zip(records, checked):
        if problem:
            problems.append(f"{problem} (case {row['case_id']} left out)")
            continue
        rows.append({**row, **facts, "num_slices": facts["num_slices"] if row["level"] == "volume" else None})
        if values is not None:
            seen[row["mask_uri"]] = values
    df = pd.DataFrame(rows)
    if df.empty:
        raise RaySegmentError(f"{src}: no {kind} cases found ({'; '.join(problems[:3]) or 'empty folder'})")
    fixed = df.pop("fixed_split") if "fixed_split" in df else None
    df["split"] = assign_splits(df, split, fixed=fixed)
    df = df.sort_values("case_id", kind="stable").reset_index(drop=True)
    table = mf.to_table(df)
    labels = None
    if found.labels_from is not None:
        labels, label_problems = check_labels(found.labels, found.labels_from, seen)
        problems += label_problems
        table = with_labels(table, labels)
    if out is not None:
        mf.write_manifest(table, out)
    df = table.to_pandas()
    return IngestResult(df, problems, mf.summary(df), out, labels)
