"""One night: discover, infer, record, report."""

from __future__ import annotations

import datetime
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from raysegment import manifest as mf
from raysegment import storage
from raysegment.errors import ConfigError
from raysegment.infer.config import fill_date
from raysegment.nightly import ledger
from raysegment.nightly.config import NightlyConfig
from raysegment.nightly.discover import discover
from raysegment.nightly.report import write_report


@dataclass
class NightResult:
    """What a night did; ``summary`` is what ``night.json`` holds.

    Attributes:
        folder: the night's output folder (``OUT/date=YYYY-MM-DD``).
        new: cases the night set out to process (0: no new scans, a success).
        done, skipped, failed: their outcome (skipped: completed by an earlier attempt at this night).
        s3_retries: S3 requests sent again after a transient failure, by the driver until the report
            and by the inference workers.
    """

    folder: str
    date: str
    model_version: str
    found: int
    new: int
    done: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    s3_retries: int = 0
    errors: pd.DataFrame = field(default_factory=pd.DataFrame)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return 3 if self.failed else 0


def run_night(config: NightlyConfig, date: str | None = None, on_case: Callable[[dict[str, Any], int], None] | None = None,
              console=None) -> NightResult:
    """Process the archive's cases this model version has not processed yet, as the night of ``date``.

    Re-running a night reuses its manifest (written before inference starts), so it finishes what
    the night started, redoes nothing that completed and picks up no later arrival.

    Args:
        config: the job.
        date: ``YYYY-MM-DD`` (default: today, UTC).
        on_case, console: progress hooks passed to :func:`raysegment.infer.run_inference`.

    Raises:
        RaySegmentError: an unreadable archive, ledger or model, or another run holding the output.
    """
    from raysegment.infer import run_inference
    from raysegment.lease import hold

    date = fill_date("{date}", date)
    retries_from, worker_retries = storage.retry_count(), 0
    folder = storage.join(config.out, f"date={date}")
    started = time.perf_counter()
    with hold(config.out, run_id=f"nightly-{date}"):  # the ledger has one writer
        model = model_version(config.model)  # once: every predictor loads this version, whatever the alias does tonight
        manifest_uri = storage.join(folder, "manifest.parquet")
        book = ledger.read_ledger(config.out)
        if storage.exists(manifest_uri):
            table = storage.read_table(manifest_uri)
            night, found = table.to_pandas(), int((table.schema.metadata or {}).get(_FOUND, len(table)))
        else:
            everything = discover(config.archive, config.kind)
            found = len(everything)
            night = ledger.pending(everything, book, model.version, config.retry_failed)
            # The fingerprints and the archive's case count ride in the night's manifest (a column
            # and a schema field that readers ignore), so a re-run records and reports exactly what
            # the night was started on.
            table = mf.to_table(night).append_column("fingerprint", _strings(night["fingerprint"]))
            mf.write_manifest(table.replace_schema_metadata({**(table.schema.metadata or {}), _FOUND: str(found)}), manifest_uri)
        result = NightResult(folder, date, model.version, found, len(night))
        if len(night):
            run = run_inference(config.infer_config(model.uri, manifest_uri, folder), on_case=on_case, console=console)
            failed = run.errors.set_index("case_id")["error"]
            outcome = night[["case_id", "fingerprint"]].assign(
                model_version=model.version, date=date,
                status=["failed" if c in failed.index else "done" for c in night["case_id"]],
                error=[failed.get(c) for c in night["case_id"]])
            ledger.record(config.out, book, outcome)
            result.done, result.skipped, result.failed, result.errors = run.done, run.skipped, run.failed, run.errors
            worker_retries = run.worker_s3_retries  # the driver's part is this process's own count
            metrics = run.metrics
        else:
            metrics = pd.DataFrame()
        result.seconds = round(time.perf_counter() - started, 3)
        result.s3_retries = storage.retry_count() - retries_from + worker_retries
        result.summary = _summary(config, result, model)
        write_report(folder, result.summary, metrics, result.errors)
    return result


#: The night manifest's schema field holding how many cases the archive held when the night started.
_FOUND = b"raysegment.nightly.found"


@dataclass(frozen=True)
class _Model:
    requested: str
    uri: str
    version: str


def model_version(model: str) -> _Model:
    """The immutable model folder ``model`` names tonight, and its version id.

    A published model (``NAME``, ``NAME@ALIAS``, ``NAME/versions/ID``) is its version; a plain
    model folder or run gets the id publishing it would give (the digest of its weights and
    ``model.json``), so the ledger tells its versions apart all the same.
    """
    from raysegment.models.checkpoint import SPEC_FILE, WEIGHTS_FILE
    from raysegment.models.versions import content_id, resolve
    from raysegment.train.export import resolve_model

    published = resolve(model)
    if published is not None:
        return _Model(model, published.uri, published.version)
    uri = resolve_model(model)
    files = {name: {"sha256": hashlib.sha256(storage.read_bytes(storage.join(uri, name))).hexdigest()} for name in (WEIGHTS_FILE, SPEC_FILE)}
    return _Model(model, uri, content_id(files))


def new_scans(archive: str, kind: str, nightly: str | None = None, model: str | None = None, retry_failed: bool = False) -> pd.DataFrame:
    """The cases of ``archive`` that a night with ``model`` on the output root ``nightly`` would process (all of them without ``nightly``).

    Returns manifest rows (split ``unlabeled``) with a ``fingerprint`` column, sorted by case id.
    """
    found = discover(archive, kind)
    if nightly is None:
        return found
    if model is None:
        raise ConfigError("new scans for a nightly output need its model (a version's ledger rows are its own)")
    return ledger.pending(found, ledger.read_ledger(nightly), model_version(model).version, retry_failed)


def _strings(values: pd.Series):
    import pyarrow as pa

    return pa.array(values.astype(object), type=pa.string())


def _summary(config: NightlyConfig, result: NightResult, model) -> dict[str, Any]:
    return {
        "date": result.date,
        "archive": config.archive,
        "kind": config.kind,
        "model": {"requested": model.requested, "uri": model.uri, "version": model.version},
        "found": result.found,
        "new": result.new,
        "done": result.done,
        "skipped": result.skipped,
        "failed": result.failed,
        "seconds": result.seconds,
        "cases_per_second": round((result.done + result.skipped) / result.seconds, 3) if result.seconds > 0 else 0.0,
        "s3_retries": result.s3_retries,
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "output": result.folder,
    }
