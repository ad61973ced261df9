"""The ledger: one compacted Parquet table of every case a model version has processed.

One row per (case, model version): the fingerprint of the files it was run on, the night, and
whether it ended done or failed. Each night reads this one table (never the earlier nights'
folders) and replaces it with one atomic write, so a night killed before that write left the
ledger as it was and its cases are picked up again.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from raysegment import storage

LEDGER_COLUMNS = {"case_id": pa.string(), "model_version": pa.string(), "fingerprint": pa.string(), "status": pa.string(),
                  "date": pa.string(), "error": pa.string()}
_SCHEMA = pa.schema(list(LEDGER_COLUMNS.items()))


def ledger_uri(root: str) -> str:
    return storage.join(root, "ledger.parquet")


def read_ledger(root: str) -> pd.DataFrame:
    """The ledger under the nightly output ``root``; empty (with its columns) before the first night."""
    uri = ledger_uri(root)
    if not storage.exists(uri):
        return _SCHEMA.empty_table().to_pandas()
    return storage.read_table(uri).select(list(LEDGER_COLUMNS)).to_pandas()


def pending(found: pd.DataFrame, ledger: pd.DataFrame, version: str, retry_failed: bool = False) -> pd.DataFrame:
    """The rows of ``found`` that ``version`` has not processed in their current content.

    A case is pending when the ledger has no row for it under ``version``, or one with another
    fingerprint (the scan was re-uploaded), or, with ``retry_failed``, one that failed. Slices of
    one volume (an LGG patient) go together: post-processing sees the patient's stacked slices (the
    largest 3D component), so one new or changed slice redoes its whole volume.
    """
    known = ledger[ledger["model_version"] == version].set_index("case_id")
    done_before = (found["case_id"].map(known["fingerprint"]) == found["fingerprint"]).fillna(False).astype(bool)
    if retry_failed:
        done_before &= found["case_id"].map(known["status"]) != "failed"
    todo = ~done_before
    volumes = found["volume_id"].where(found["level"] == "slice")
    todo |= volumes.isin(set(volumes[todo].dropna()))
    return found[todo].reset_index(drop=True)


def record(root: str, ledger: pd.DataFrame, night: pd.DataFrame) -> pd.DataFrame:
    """``ledger`` with the night's rows, written back; returns it.

    A night's row replaces the ledger's row of the same case and version, unless that one is from a
    later night: re-running an earlier night (to finish it) must not undo what a later night
    recorded, such as a scan re-uploaded since.
    """
    merged = pd.concat([ledger, night[list(LEDGER_COLUMNS)]], ignore_index=True) if len(ledger) else night[list(LEDGER_COLUMNS)]
    # A stable sort by night: of two rows of the same night, the one recorded now comes last and wins.
    merged = merged.sort_values("date", kind="stable").drop_duplicates(["case_id", "model_version"], keep="last")
    merged = merged.sort_values(["model_version", "case_id"], ignore_index=True)
    storage.write_table(ledger_uri(root), pa.Table.from_pandas(merged, schema=_SCHEMA, preserve_index=False))
    return merged
