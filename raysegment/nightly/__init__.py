"""The nightly job: new scans of an archive through bulk inference, once per case and model version.

:func:`run_night` lists the archive, keeps the cases the ledger has no record of for this model
version and these file contents, writes that night's manifest, runs :func:`raysegment.infer.run_inference`
on it, records the outcome in the ledger and writes a night report.
"""

from raysegment.nightly.config import NightlyConfig
from raysegment.nightly.ledger import LEDGER_COLUMNS, read_ledger
from raysegment.nightly.run import NightResult, run_night

__all__ = ["LEDGER_COLUMNS", "NightResult", "NightlyConfig", "read_ledger", "run_night"]
