"""``run_inference(config)``: the Ray Data pipeline from a manifest to masks, metrics and a run summary.

    units -> flat_map(decode_unit) -> map_batches(Predictor, actor pool) -> flat_map(write_unit) -> case results
    units -> map_batches(ChainPredictor: decode, predict, write; actor pool) -> case results     (fused: CPU, local)

Rows are whole units (a case, or the slices of one patient volume: :mod:`.units`) and the pipeline
streams: the driver only ever holds the small per-case result rows, and Ray Data's backpressure
bounds the scans in flight, however long the manifest. Every case of the manifest ends as exactly
one ``done``/``skipped`` record or one ``errors.parquet`` row.

A run holds the lease of its output (:mod:`raysegment.lease`) from start to end, so a second run
on the same output refuses at once; it resolves a model repository's alias once
(:mod:`raysegment.models.versions`), and every predictor loads that version.
"""

from __future__ import annotations

import datetime
import gc
import json
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import pandas as pd

from raysegment import lease, storage
from raysegment.errors import ConfigError
from raysegment.infer.chain import ChainPredictor
from raysegment.infer.config import InferConfig
from raysegment.infer.decode import decode_unit
from raysegment.infer.plan import Plan
from raysegment.infer.retries import COLUMN as RETRIES
from raysegment.infer.retries import CountedPredictor, counted
from raysegment.infer.skip import split_complete
from raysegment.infer.units import group_units, units_per_call
from raysegment.infer.watchdog import bounded
from raysegment.infer.write import overlay_cases, write_unit
from raysegment.runtime import check_local_request, local_resources, task_runtime_env
from raysegment.sizing import IO_TASK_CPUS, size_infer

ERROR_COLUMNS = ["case_id", "stage", "error"]
EXIT_OK, EXIT_SOME_FAILED = 0, 3


@dataclass
class InferenceResult:
    """What a run did.

    Attributes:
        cases: cases in the (limited) manifest.
        done, skipped, failed: how they ended; ``done + skipped + failed == cases``.
        slices: slices segmented in this run (skipped cases excluded).
        seconds: wall time of the pipeline.
        metrics: one row per case and class (``metrics.parquet``).
        errors: one row per failed case (``errors.parquet``).
        run: the ``run.json`` document; its ``s3_retries`` counts the S3 requests sent again after a
            transient failure, by the driver (until the summaries are written) and the workers.
        worker_s3_retries: the workers' part of them.
    """

    cases: int
    done: int
    skipped: int
    failed: int
    slices: int
    seconds: float
    metrics: pd.DataFrame
    errors: pd.DataFrame
    run: dict[str, Any]
    worker_s3_retries: int = 0

    @property
    def slices_per_second(self) -> float:
        return self.slices / self.seconds if self.seconds > 0 else 0.0

    @property
    def model_version(self) -> dict[str, Any] | None:
        """The model repository version the run used (``run.json``'s ``model.version``); None for a plain model folder."""
        return self.run["model"]["version"]

    @property
    def exit_code(self) -> int:
        """0 when every case is done or skipped, 3 when some failed."""
        return EXIT_SOME_FAILED if self.failed else EXIT_OK


def run_inference(config: InferConfig, on_case: Callable[[dict[str, Any], int], None] | None = None,
                  console=None) -> InferenceResult:
    """Segment every case of ``config.manifest`` with ``config.model`` into ``config.out``.

    The checkpoint and the manifest are read on the driver first, so a wrong URI, bad credentials
    or an unreachable endpoint fail in seconds with one line, before Ray starts. A second run on an
    output whose lease another run holds is refused as fast.

    Args:
        config: the run.
        on_case: called on the driver with each finished case's result row and the number of
            cases in the run (progress display).
        console: a rich Console for the line saying what the run takes of the machine, or None.

    Raises:
        RaySegmentError: unreadable checkpoint or manifest (per-case problems never raise).
        LeaseHeldError: another run writes to ``config.out``.
        LeaseLostError: this run's lease expired and another run took the output over; this
            run's summaries are not written over that run's.
    """
    import ray

    from raysegment.manifest import read_manifest
    from raysegment.models import read_metadata
    from raysegment.models.versions import resolve
    from raysegment.runtime import init_ray
    from raysegment.train.export import resolve_model

    started, run_id, retries_from = _now(), uuid.uuid4().hex[:12], storage.retry_count()
    # Once, here: actors restarted mid-run load this immutable version, whatever the alias says by then.
    version = resolve(config.model)
    config = config.model_copy(update={"model": version.uri if version else resolve_model(config.model)})  # a run folder or epoch checkpoint too
    metadata = read_metadata(config.model)
    manifest = read_manifest(config.manifest)
    if config.limit is not None:
        manifest = manifest.head(config.limit)
    lease.refuse_if_held(config.out)
    init_ray(config.address)
    sizing = size_infer(local_resources(config.address), config.workers, config.cpus_per_worker, config.gpus_per_worker)
    if console is not None:
        console.print(sizing.line(), markup=False, highlight=False, soft_wrap=True)
    config = config.model_copy(update={"workers": sizing.workers, "cpus_per_worker": sizing.cpus_per_worker})
    plan = Plan.build(config, metadata)
    io = io_tasks(config)  # fails fast on a request the local instance cannot meet
    # Taken once the run is known to be able to start: a run refused for its config leaves no output behind.
    with lease.hold(config.out, run_id) as held:
        storage.remove_stale_temporaries(config.out)  # what a run killed mid-write left behind
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the CLI draws one progress bar per case instead
        context.print_on_execution_start = False

        clock = time.perf_counter()
        results = _segment(config, plan, manifest, io, on_case)
        seconds = time.perf_counter() - clock
        held.check()  # another run took the output over: its summaries must not be overwritten
        facts = {"run_id": run_id, "started": started, "version": version.to_dict() if version else None, "retries_from": retries_from}
        return _finish(config, plan, results, seconds, facts)


def _segment(config: InferConfig, plan: Plan, manifest: pd.DataFrame, io: IoTasks, on_case) -> list[dict[str, Any]]:
    """One result row per case: the complete units settled first (:mod:`.skip`), a pass over the
    others, then one over the units a dead worker held, each alone.

    Ray Data restarts a dead actor and retries its tasks without end by default, so one case that
    kills its worker (out of memory, a crash in a decoder or the model, or a hang the watchdog
    ended) would hold the run until its deadline. Here a block whose worker died is dropped
    instead, after one retry (a block of many units does not say which one killed it). Its cases
    then run again each alone, ``case_retries`` times in all, so only the case
    that kills its worker is lost, and then as an error row.
    """
    results: list[dict[str, Any]] = []

    def collect(rows) -> None:
        for row in rows:
            results.append(row)
            if on_case is not None:
                on_case(row, len(manifest))

    tries = 1 + _FIRST_PASS_RETRIES + config.case_retries
    units, skipped = split_complete(group_units(manifest), plan, io.cpus, io.limit or _VERIFY_TASKS)
    collect(skipped)
    if units.empty:  # nothing new, or a re-run of a finished output: no predictor need start (seconds each)
        return results
    try:
        overlays = overlay_cases(manifest, config.overlays)
        collect(_rows(_pipeline(config, plan, units, io, overlays)))
        lost = _missing(manifest, results)
        if lost and config.case_retries:
            collect(_rows(_pipeline(config, plan, units, io, overlays, alone=lost)))
    except Exception as exc:  # noqa: BLE001 - Ray Data gave up (actors dying as they load the model): the cases left still get error rows
        return results + _lost_cases(manifest, results, "pipeline", f"the pipeline stopped ({type(exc).__name__}: {' '.join(str(exc).split())[:300]})")
    hung = f" or ran past the per-case timeout ({config.case_timeout_s:g} s a stage)" if config.case_timeout_s else ""
    return results + _lost_cases(manifest, results, "worker", f"its worker died{hung} on each of {tries} tries (out of memory, a crash "
                                                              "in a decoder or the model, or a hang; the Ray worker logs say which)")


def _rows(ds) -> Iterator[dict[str, Any]]:
    """The result rows of one pass; then the pass's restarted predictors are let go.

    Ray Data ends a pass's predictors when it finishes, except one that died and is being restarted:
    that one lives until the pass's executor is garbage-collected, holding its CPUs (or GPU), and
    the next pass or run of this process may wait minutes for them (Ray 2.60: after a poison case,
    the pass of its units alone waited 4.5 minutes on 2 CPUs).
    """
    yield from ds.iter_rows()
    gc.collect()


#: Verification tasks of a re-run on a cluster (a local instance runs as many as it decodes at once).
_VERIFY_TASKS = 16

# One retry in the first pass: a transient worker loss costs no case, a poison case costs one more
# try before its block is dropped. Not 0: Ray Data tasks with ``max_retries=0`` ran at half the speed
# (LGG slices at 32 px, 9.7 against 20 slices/s, benchmarks/infer_throughput.py, 2026-12-02).
_FIRST_PASS_RETRIES = 1


def _pipeline(config: InferConfig, plan: Plan, units: pd.DataFrame, io: IoTasks, overlays: frozenset[str],
              alone: list[str] | None = None):
    """The dataset of one pass over ``units`` (or only the units of the cases ``alone``, a block each):
    fused (:mod:`.chain`, see :func:`fused`) or split into decode tasks, predictor actors and write tasks.

    ``overlays``: the cases to draw (:func:`overlay_cases`, chosen from the whole manifest).
    """
    import ray

    # The driver has read and validated the manifest already (fail fast, unique case ids, --limit);
    # it is small next to the scans, so Ray Data starts from it rather than listing the file again.
    # One block per predictor call: decode tasks then run in parallel and stream.
    if alone is not None:
        lost = set(alone)
        units = units[[any(str(c["case_id"]) in lost for c in json.loads(cases)) for cases in units["cases"]]]
    per_call = 1 if alone else units_per_call(units, config.batch_size, config.workers)
    retries = config.case_retries - 1 if alone else _FIRST_PASS_RETRIES
    blocks = -(-len(units) // per_call)
    # Built on the driver: from_pandas would run a Ray task per block to read its schema (3 s for 15 blocks on 2 cores).
    ds = ray.data.from_items(units[["unit", "cases"]].to_dict(orient="records"), override_num_blocks=blocks)
    env = task_runtime_env()
    # No more predictors than blocks: each is a process that imports torch and loads the model
    # (seconds) before it can take one. One unit at a time per actor when alone: a unit that kills
    # its actor takes no other down with it.
    predictors = dict(compute=ray.data.ActorPoolStrategy(size=min(config.workers, blocks), max_tasks_in_flight_per_actor=1 if alone else None),
                      batch_size=per_call, num_cpus=config.cpus_per_worker, num_gpus=config.gpus_per_worker or None,
                      runtime_env=env, max_restarts=-1, max_task_retries=retries)
    with warnings.catch_warnings():
        # Ray 2.60 takes retries and restarts only as ``**ray_remote_args``, deprecated with no named replacement yet.
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        if fused(config):
            ds = ds.map_batches(ChainPredictor, fn_constructor_kwargs={"plan": plan, "overlays": overlays}, **predictors)
        else:
            pool = ray.data.TaskPoolStrategy(size=io.limit)
            # Resources unlike the predictor's also keep Ray Data from fusing decoding into the (one per
            # GPU) predictor actors.
            ds = ds.flat_map(partial(counted, partial(bounded, decode_unit)), fn_kwargs={"plan": plan}, compute=pool, num_cpus=io.cpus,
                             runtime_env=env, max_retries=retries)
            ds = ds.map_batches(CountedPredictor, fn_constructor_kwargs={"plan": plan}, **predictors)
            ds = ds.flat_map(partial(counted, partial(bounded, write_unit)), fn_kwargs={"plan": plan, "overlays": overlays},
                             compute=pool, num_cpus=io.cpus, runtime_env=env, max_retries=retries)
    ds.context.max_errored_blocks = -1  # a block whose worker died is dropped: its cases come out missing, and go again alone
    return ds


def fused(config: InferConfig) -> bool:
    """Whether each predictor also decodes and writes (:mod:`.chain`): ``config.fuse``, or by default
    on a local instance whose predictors use no GPU."""
    if config.fuse is not None:
        return config.fuse
    return not config.gpus_per_worker and local_resources(config.address) is not None


@dataclass(frozen=True)
class IoTasks:
    """CPUs of one decode or write task, and how many of each may run at once (None: no cap)."""

    cpus: float
    limit: int | None


def io_tasks(config: InferConfig) -> IoTasks:
    """Size the decode and write tasks: half a CPU each (they partly wait on storage), capped on a local instance.

    On a local instance the CPUs the predictors leave are split evenly between decoding and
    writing. Sharing them instead, Ray Data keeps decoding ahead while finished predictions wait to
    be written (on 2 cores the first mask of a 96-volume run came after 44 s, not 7 s), and every
    task it queues beyond what can run makes the raylet start another worker process (torch
    imported, about 0.4 GB): peak memory then grows with the manifest. A cluster is neither capped
    nor checked: its autoscaler adds CPUs and GPUs for the queue.

    Raises:
        ConfigError: the predictors would leave a local instance less than ``IO_TASK_CPUS`` for
            decoding and writing (Ray Data would wait forever), or ask for GPUs it lacks.
    """
    have = local_resources(config.address)
    if have is None:
        return IoTasks(IO_TASK_CPUS, None)
    sizing = size_infer(have, config.workers, config.cpus_per_worker, config.gpus_per_worker)  # the run's, when sized
    workers = sizing.workers
    check_local_request(config.address, {"GPU": workers * config.gpus_per_worker},
                        f"--workers {workers} x --gpus-per-worker {config.gpus_per_worker:g}")
    cpus = have.get("CPU", 0.0)
    wanted = workers * sizing.cpus_per_worker
    if wanted + IO_TASK_CPUS > cpus:
        raise ConfigError(
            f"--workers {workers} x --cpus-per-worker {sizing.cpus_per_worker:g} = {wanted:g} CPUs for predictors "
            f"leaves less than {IO_TASK_CPUS:g} of the {cpus:g} local CPUs for reading and writing scans; "
            f"lower --workers or --cpus-per-worker (e.g. --cpus-per-worker {max(cpus - IO_TASK_CPUS, 0.1) / workers:.2g})"
        )
    per_stage = (cpus - wanted) / 2
    io_cpus = min(IO_TASK_CPUS, per_stage)
    return IoTasks(io_cpus, max(1, int(per_stage // io_cpus)))


def _missing(manifest: pd.DataFrame, results: list[dict]) -> list[str]:
    """Case ids of ``manifest`` that no result row names."""
    seen = {r["case_id"] for r in results}
    return [c for c in manifest["case_id"] if c not in seen]


def _lost_cases(manifest: pd.DataFrame, results: list[dict], stage: str, reason: str) -> list[dict]:
    """Error rows for the manifest cases the pipeline returned nothing for."""
    return [{"case_id": c, "key": "", "status": "failed", "stage": stage, "error": f"case {c}: {reason}", "slices": 0, "record": ""}
            for c in _missing(manifest, results)]


def _finish(config: InferConfig, plan: Plan, results: list[dict], seconds: float, facts: dict[str, Any]) -> InferenceResult:
    counts = {s: sum(r["status"] == s for r in results) for s in ("done", "skipped", "failed")}
    slices = sum(int(r["slices"]) for r in results)
    worker_retries = sum(int(r.get(RETRIES, 0)) for r in results)  # rows the driver made for lost cases carry none
    errors = pd.DataFrame([{k: r[k] for k in ERROR_COLUMNS} for r in results if r["status"] == "failed"], columns=ERROR_COLUMNS)
    errors = errors.sort_values("case_id", ignore_index=True)
    metrics = metrics_table(r["record"] for r in results if r["record"])
    run = {
        "cases": len(results),
        **counts,
        "slices": slices,
        "seconds": round(seconds, 3),
        "slices_per_second": round(slices / seconds, 3) if seconds > 0 else 0.0,
        "s3_retries": storage.retry_count() - facts["retries_from"] + worker_retries,
        "run_id": facts["run_id"],
        "model": {"uri": plan.model_uri, "id": plan.model_id, "classes": list(plan.class_names), "version": facts["version"]},
        "postprocess": plan.postprocess,
        "pipeline": "fused" if fused(config) else "split",
        "config": config.model_dump(),
        "started": facts["started"],
        "finished": _now(),
    }
    storage.write_table(storage.join(config.out, "errors.parquet"), _arrow(errors, {c: "string" for c in ERROR_COLUMNS}))
    storage.write_table(storage.join(config.out, "metrics.parquet"), _arrow(metrics))
    storage.write_bytes(storage.join(config.out, "run.json"), json.dumps(run, indent=2).encode())
    return InferenceResult(len(results), counts["done"], counts["skipped"], counts["failed"], slices, seconds, metrics, errors, run,
                           worker_s3_retries=worker_retries)


def metrics_table(records: Iterable[str]) -> pd.DataFrame:
    """One row per case and class, in case id order, from the cases' JSON records: case_metrics (when
    ground truth exists), foreground mL, time, model.

    Records are parsed one at a time: a night's 10^5 of them parsed at once would be most of the
    driver's memory.
    """
    columns: dict[str, list] = {}
    count = 0
    for record in map(json.loads, records):
        by_class = {m["class"]: m for m in record.get("metrics") or []}
        for name, volume in record["foreground_ml"].items():
            row = {"case_id": record["case_id"], "class": name, **{k: v for k, v in by_class.get(name, {}).items() if k != "class"},
                   "foreground_ml": volume, "inference_seconds": record["inference_seconds"], "model_id": record["model_id"]}
            for key, value in row.items():  # column-wise: a dict per row is ten times the memory
                columns.setdefault(key, [None] * count).append(value)
            count += 1
            for values in columns.values():
                if len(values) < count:  # a case without ground truth has no metrics
                    values.append(None)
    last = ["foreground_ml", "inference_seconds", "model_id"]
    if not count:
        return pd.DataFrame(columns=["case_id", "class", *last])
    table = pd.DataFrame({name: columns[name] for name in [*(c for c in columns if c not in last), *last]})
    return table.sort_values("case_id", kind="stable", ignore_index=True)  # stable: classes stay in the model's order


def _arrow(df: pd.DataFrame, types: dict[str, str] | None = None):
    """A Parquet-ready table; ``types`` fixes column types that an empty frame cannot tell."""
    import pyarrow as pa

    schema = pa.schema([(c, pa.type_for_alias(types[c])) for c in df.columns]) if types else None
    return pa.Table.from_pandas(df, schema=schema, preserve_index=False)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
