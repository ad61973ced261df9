"""A run SIGKILLed mid-way and re-run ends exactly as an uninterrupted run does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from raysegment import storage
from raysegment.infer import case_key, run_inference
from raysegment.infer.units import group_units
from raysegment.manifest import read_manifest
from raysegment.readers import read_mask

pytestmark = pytest.mark.slow


def _records(out: str) -> list[str]:
    return storage.list_files(storage.join(out, "records"))


def _settled_records(out: str, quiet_s: float = 3.0, limit_s: float = 60.0) -> list[str]:
    """The records once none has appeared for ``quiet_s``: Ray's worker processes get their own
    process groups, so one may finish writing a case after the driver's group is killed."""
    records, still_since, deadline = _records(out), time.monotonic(), time.monotonic() + limit_s
    while time.monotonic() - still_since < quiet_s and time.monotonic() < deadline:
        time.sleep(0.2)
        now = _records(out)
        if now != records:
            records, still_since = now, time.monotonic()
    return records


def _cases_of_complete_units(manifest: str, out: str) -> int:
    """Cases of the units (a patient's slices, or a case) that have every record: a re-run skips those only."""
    written = {storage.basename(u) for u in _records(out)}
    units = [[c["case_id"] for c in json.loads(cases)] for cases in group_units(read_manifest(manifest))["cases"]]
    return sum(len(u) for u in units if all(f"{case_key(c)}.json" in written for c in u))


def test_killed_run_then_rerun_equals_an_uninterrupted_run(reference_run, lgg, lgg_hostile_manifest, tmp_path):
    out = str(tmp_path / "out")
    command = [sys.executable, "-m", "raysegment", "infer", "--model", lgg["model"], "--manifest", lgg_hostile_manifest,
               "--out", out, "--batch-size", "4", "--json"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    # Its own session: the SIGKILL also reaches the local Ray processes the subprocess starts.
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not _records(out) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    at_kill = len(_settled_records(out))
    assert 0 < at_kill < 12, f"the run was not caught mid-way ({at_kill} records)"
    complete = _cases_of_complete_units(lgg_hostile_manifest, out)

    result = run_inference(reference_run["config"].model_copy(update={"out": out}))
    assert result.failed == 0 and result.skipped == complete and result.done + result.skipped == 12
    assert len(_records(out)) == 12
    expected = {storage.basename(u): read_mask(u).array for u in storage.list_files(storage.join(reference_run["out"], "masks"))}
    masks = {storage.basename(u): read_mask(u).array for u in storage.list_files(storage.join(out, "masks"))}
    assert masks.keys() == expected.keys()
    for name, mask in expected.items():
        np.testing.assert_array_equal(masks[name], mask)
