"""A night on S3 through a proxy that throttles (503 SlowDown) and resets connections: nothing lost, nothing twice, retries counted.

The archive and the output are on the loopback S3 server; the driver and every Ray worker reach it
through :class:`s3_faults.FaultProxy` (the endpoint travels to the workers with the storage
configuration). Every fault the proxy injects must show in the night's retry count, no more and no
fewer: the proxy spares only what the night does after taking its count (the report's files and the
release of the night's lease).
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from s3_faults import FaultProxy

from raysegment import storage, storage_config
from raysegment.infer import case_key
from raysegment.nightly import NightlyConfig, read_ledger, run_night
from raysegment.sample_data import make_sample_data

pytestmark = [pytest.mark.s3, pytest.mark.slow]

DATE = "2026-04-01"
REPORT_FILES = ("night.json", "report.md", "report.png")


@pytest.fixture
def night(s3_server, s3_bucket, lgg, monkeypatch):
    """A 3-patient LGG archive on S3 (written directly), a night config, and the proxy every process then goes through."""
    make_sample_data(f"{s3_bucket}/archive", "lgg", patients=3, slices=3, size=64)
    config = NightlyConfig(archive=f"{s3_bucket}/archive/kaggle_3m", kind="lgg", model=lgg["model"], out=f"{s3_bucket}/nightly",
                           infer={"workers": 1, "cpus_per_worker": 0.5})
    bucket = s3_bucket.removeprefix("s3://")

    def after_the_count(method: str, path: str) -> bool:
        return path == f"/{bucket}/nightly/lease.json" or path.rsplit("/", 1)[-1] in REPORT_FILES

    with FaultProxy(s3_server, share=0.15, seed=0, spare=after_the_count, max_per_request=2) as proxy:
        monkeypatch.setattr(storage_config, "_overrides", {})  # forgotten after the test
        # Two faults at most per request, two requests at most per operation (HEAD + GET): 6 attempts never run out.
        storage.configure(endpoint_url=proxy.url, max_attempts=6)
        yield config, proxy


def _objects(bucket_uri: str) -> dict[str, int]:
    files = storage.listing(bucket_uri)
    return dict(zip(files["uri"].to_pylist(), files["size"].to_pylist()))


def test_a_night_through_faults_loses_nothing_writes_nothing_twice_and_counts_its_retries(night, s3_bucket, ray_session):
    config, proxy = night
    before = proxy.count()
    first = run_night(config, DATE)
    injected = proxy.count() - before

    assert (first.found, first.new, first.done, first.failed, first.exit_code) == (9, 9, 9, 0, 0)
    assert proxy.count("503") > 0 and proxy.count("reset") > 0
    # Faults met by the workers' own requests: reading scans, writing masks and records.
    assert any(part in f.path for f in proxy.faults for part in (".tif", "/masks/", "/records/"))
    night_json = json.loads(storage.read_bytes(f"{first.folder}/night.json"))
    assert injected > 0 and first.s3_retries == night_json["s3_retries"] == injected
    report = storage.read_bytes(f"{first.folder}/report.md").decode().splitlines()
    assert [line.rsplit("|", 2)[1].strip() for line in report if line.startswith("| S3 retries")] == [str(injected)]
    run_json = json.loads(storage.read_bytes(f"{first.folder}/run.json"))
    assert 0 < run_json["s3_retries"] <= injected  # the inference's share (its driver part ends before its summaries)

    book = read_ledger(config.out)
    cases = sorted(book["case_id"])
    assert len(cases) == 9 and book["case_id"].is_unique and set(book["status"]) == {"done"}
    objects = _objects(s3_bucket)
    assert all(size > 0 for size in objects.values()), [uri for uri, size in objects.items() if not size]
    masks = [uri for uri in objects if uri.startswith(f"{first.folder}/masks/")]
    records = [uri for uri in objects if uri.startswith(f"{first.folder}/records/")]
    assert sorted(storage.basename(m).split(".")[0] for m in masks) == sorted(case_key(c) for c in cases)
    assert sorted(storage.basename(r) for r in records) == sorted(f"{case_key(c)}.json" for c in cases)
    metrics = storage.read_table(f"{first.folder}/metrics.parquet").to_pandas()
    assert not metrics.duplicated(["case_id", "class"]).any() and set(metrics["case_id"]) == set(cases)
    assert storage.read_table(f"{first.folder}/errors.parquet").num_rows == 0

    # The same night again, through the same faults: every case is skipped and nothing changes.
    masks_before = {m: storage.read_bytes(m) for m in masks}
    before = proxy.count()
    again = run_night(config, DATE)
    assert (again.new, again.done, again.skipped, again.failed) == (9, 0, 9, 0)
    assert again.s3_retries == proxy.count() - before
    pd.testing.assert_frame_equal(read_ledger(config.out), book)
    after = _objects(s3_bucket)
    assert {m: storage.read_bytes(m) for m in masks} == masks_before
    assert {uri for uri in after if uri.startswith((f"{first.folder}/masks/", f"{first.folder}/records/"))} == set(masks) | set(records)
