"""Importers from the seed datasets' published layouts to a validated, patient-split manifest.

Each importer is one module registering a ``discover(src, **options) -> Discovery`` function; the
shared steps (foreground detection, splitting, validation, writing) live in :mod:`.base`.
"""

from raysegment.ingest import brats, lgg, lv  # noqa: F401  (register the importers)
from raysegment.ingest.base import IMPORTERS, Discovery, IngestResult, ingest

__all__ = ["IMPORTERS", "Discovery", "IngestResult", "ingest"]
