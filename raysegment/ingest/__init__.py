"""Importers from published dataset layouts, and from self-described data, to a validated, patient-split manifest.

Each importer is one module registering a ``discover(src, **options) -> Discovery`` function; the
shared steps (foreground detection, splitting, validation, writing) live in :mod:`.base`. The seed
datasets have their own layouts (``lgg``, ``brats``, ``lv``); ``msd`` and ``nnunet`` read a folder a
``dataset.json`` describes, ``table`` a CSV/Parquet list of cases (checked by :mod:`.volumes`).
Their label definitions travel in the manifest (:func:`labels_of`).
"""

from raysegment.ingest import brats, lgg, lv, msd, nnunet, table  # noqa: F401  (register the importers)
from raysegment.ingest.base import IMPORTERS, DatasetError, Discovery, IngestResult, ingest
from raysegment.ingest.labels import labels_of

__all__ = ["IMPORTERS", "DatasetError", "Discovery", "IngestResult", "ingest", "labels_of"]
