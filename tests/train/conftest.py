"""The training tests' sample data and trained seed jobs come from ``fixtures_data`` (shared with evaluate and compare)."""

from fixtures_data import brats_manifest, lgg_manifest, lv_manifest, msd_manifest, trained_job  # noqa: F401  (fixtures)
