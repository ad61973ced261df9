"""The nightly manifest: scans in an archive prefix that no earlier run has segmented yet.

The archive is read with the dataset importers (``raysegment.ingest``), so a night's manifest has
the same schema and case ids as any other. A case counts as processed when a completion record
for its key exists anywhere under the ``processed`` prefix (e.g. every ``date=*/records/`` of the
nightly outputs); records are written only after their mask, so a half-written case is picked up
again.
"""

from __future__ import annotations

import pandas as pd

from raysegment import manifest as mf
from raysegment import storage
from raysegment.errors import RaySegmentError
from raysegment.infer.layout import case_key


def processed_keys(processed: str) -> set[str]:
    """Case keys with a completion record anywhere below ``processed``."""
    return {
        storage.basename(uri)[: -len(".json")]
        for uri in storage.list_files(processed)
        if uri.endswith(".json") and storage.basename(storage.parent(uri)) == "records"
    }


def new_scans(archive: str, kind: str, processed: str | None = None, out: str | None = None) -> pd.DataFrame:
    """Manifest rows (split ``unlabeled``) for the cases of ``archive`` not yet processed.

    Args:
        archive: dataset root in one of the importers' layouts (local or s3://).
        kind: importer name (``lgg``, ``brats``, ``lv``).
        processed: prefix holding earlier inference outputs; None treats every case as new.
        out: where to write the manifest (Parquet), if given. Masks found in the archive are kept
            (inference then reports metrics for those cases).

    Returns:
        The manifest rows, sorted by case id (possibly none).
    """
    from raysegment.ingest import IMPORTERS

    found = IMPORTERS.get(kind)(archive)
    done = processed_keys(processed) if processed else set()
    rows = [{**{k: v for k, v in row.items() if k != "fixed_split"}, "split": "unlabeled"}
            for row in found.rows if case_key(row["case_id"]) not in done]
    if not found.rows:
        raise RaySegmentError(f"{archive}: no {kind} scans found ({'; '.join(found.problems[:3]) or 'empty prefix'})")
    # to_table fills the optional columns; an empty night still gets a manifest with the full schema.
    df = pd.DataFrame(rows) if rows else pd.DataFrame({"case_id": pd.Series([], dtype=object)})
    table = mf.to_table(df.sort_values("case_id", ignore_index=True))
    if out is not None:
        mf.write_manifest(table, out)
    return table.to_pandas()
