"""One run per output prefix (a lease on loopback S3), and the model version a run resolves once at start."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time

import pytest

from raysegment import lease, storage
from raysegment.infer import InferConfig, run_inference
from raysegment.models import versions

pytestmark = [pytest.mark.s3, pytest.mark.slow]


def _wait_for(uri: str, limit_s: float = 120.0) -> dict:
    deadline = time.monotonic() + limit_s
    while not storage.exists(uri):
        assert time.monotonic() < deadline, f"{uri} never appeared"
        time.sleep(0.05)
    return json.loads(storage.read_bytes(uri))


def test_a_second_run_on_a_prefix_refuses_at_once_and_the_first_keeps_its_version(lgg, s3_bucket, ray_session, tmp_path):
    repository = f"{s3_bucket}/models/lgg"
    published = versions.publish(lgg["model"], repository, ["production"])
    out = f"{s3_bucket}/results/date=2026-12-01"
    first: dict = {}
    thread = threading.Thread(target=lambda: first.update(result=run_inference(
        InferConfig(model=repository, manifest=lgg["manifest"], out=out, batch_size=4))))
    thread.start()
    try:
        holder = _wait_for(lease.lease_uri(out))
        clock = time.monotonic()
        with pytest.raises(lease.LeaseHeldError) as refused:
            run_inference(InferConfig(model=lgg["model"], manifest=lgg["manifest"], out=out, batch_size=4))
        assert time.monotonic() - clock < 15
        for part in (holder["owner"]["run_id"], socket.gethostname(), str(holder["owner"]["pid"]), holder["expires"]):
            assert part in str(refused.value)
        # Re-published mid-run: the run goes on with the version it resolved at start.
        other = shutil.copytree(lgg["model"], tmp_path / "other")
        (other / "model.json").write_text(json.dumps({**json.loads((other / "model.json").read_text()), "metrics": {"val_dice": 0.9}}))
        assert versions.publish(str(other), repository, ["production"]).version != published.version
    finally:
        thread.join(timeout=300)
    result = first["result"]
    assert (result.done, result.failed) == (8, 0)
    run = json.loads(storage.read_bytes(f"{out}/run.json"))
    assert run["run_id"] == holder["owner"]["run_id"]
    assert run["model"]["uri"] == published.uri and result.model_version["version"] == published.version
    assert run["model"]["version"]["alias"] == "production"
    records = [json.loads(storage.read_bytes(u)) for u in storage.list_files(f"{out}/records")]
    assert {r["model_id"] for r in records} == {run["model"]["id"]}
    assert not storage.exists(lease.lease_uri(out))


def test_a_lease_left_by_a_killed_run_is_taken_over_once_expired(lgg, ray_session, tmp_path):
    out = str(tmp_path / "out")
    killed = lease.acquire(out, run_id="killed", ttl_s=0.2)
    assert killed.run_id == "killed"
    time.sleep(0.3)
    result = run_inference(InferConfig(model=lgg["model"], manifest=lgg["manifest"], out=out, batch_size=4, limit=2))
    assert result.done == 2 and result.run["model"]["version"] is None
    assert not storage.exists(lease.lease_uri(out))
