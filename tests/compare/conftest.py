"""``compare`` reads the trained seed-job runs that the training tests also check (``fixtures_data``)."""

from fixtures_data import lgg_manifest, trained_job  # noqa: F401  (fixtures)
