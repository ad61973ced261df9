"""What a re-run skips, settled before any predictor starts.

A case is complete when its record exists and every file the record names is intact
(:func:`raysegment.infer.layout.completed_record`); a unit (a patient's slices, or one case) is
skipped only when all of its cases are, since the post-processing of each slice needs the others.
One listing of ``OUT/records`` on the driver tells which units can be complete at all: a new night
has no record, so nothing is read per case. Only the units whose every case has a record are
verified, in Ray tasks that re-read their files; what is left goes through the pipeline. A re-run
of a finished output thus starts no predictor (each a process that imports torch and loads the
model) and reads no scan.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from raysegment import storage
from raysegment.errors import RaySegmentError
from raysegment.infer.layout import case_key, completed_record
from raysegment.infer.plan import Plan
from raysegment.infer.retries import COLUMN as RETRIES
from raysegment.infer.write import result_row


def split_complete(units: pd.DataFrame, plan: Plan, cpus: float, parallel: int) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """The units still to segment, and one ``skipped`` result row per case of the complete ones.

    Args:
        units: :func:`raysegment.infer.units.group_units` of the run's manifest.
        cpus: CPUs of one verification task (the run's decode tasks').
        parallel: how many verification tasks to spread the candidate units over.
    """
    if plan.overwrite or units.empty:
        return units, []
    recorded = {storage.basename(uri) for uri in storage.list_files(storage.join(plan.out, "records"))}
    candidates = [i for i, cases in enumerate(units["cases"])
                  if all(f"{case_key(str(c['case_id']))}.json" in recorded for c in json.loads(cases))]
    if not candidates:
        return units, []
    import ray

    from raysegment.runtime import task_runtime_env

    verify = ray.remote(_verify).options(num_cpus=cpus, runtime_env=task_runtime_env())
    chunks = [candidates[k::parallel] for k in range(min(parallel, len(candidates)))]
    complete: dict[int, list[dict[str, Any]]] = {}
    for found in ray.get([verify.remote([units["cases"].iloc[i] for i in chunk], chunk, plan) for chunk in chunks]):
        complete.update(found)
    rows = [row for i in sorted(complete) for row in complete[i]]
    return units.drop(index=units.index[sorted(complete)]), rows


def _verify(cases_of_units: list[str], indices: list[int], plan: Plan) -> dict[int, list[dict[str, Any]]]:
    """Ray task: the ``skipped`` result rows of each unit whose every case is complete, by unit index."""
    start, found = storage.retry_count(), {}
    for index, cases in zip(indices, cases_of_units):
        entries = [{"case_id": str(c["case_id"]), "key": case_key(str(c["case_id"]))} for c in json.loads(cases)]
        records = [_completed(e["case_id"], plan) for e in entries]
        if all(r is not None for r in records):
            found[index] = [{**result_row(e, "skipped", record=r), RETRIES: 0} for e, r in zip(entries, records)]
    if found:  # the retries of the whole task ride on its first row, as the pipeline's stages do
        first = found[min(found)][0]
        first[RETRIES] = storage.retry_count() - start
    return found


def _completed(case_id: str, plan: Plan) -> dict[str, Any] | None:
    try:
        return completed_record(plan.out, case_id, plan.model_id)
    except RaySegmentError:
        return None  # unreachable storage: decoding the case will say so against its file
