"""A per-case time limit Ray can act on: a stage past its deadline ends its own worker process.

A hung decoder or forward pass cannot be interrupted from Python (it sits in native code), and Ray
Data has no task timeout. Ending the process turns a hang into what a crash or an out-of-memory
kill already is, a dead worker, which :mod:`raysegment.infer.run` handles: the cases it held are
tried again alone a bounded number of times, then become error rows. Before it exits, the process
writes every thread's traceback to its Ray worker log (``faulthandler``), which says where it hung.
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
from collections.abc import Callable, Iterator
from typing import Any

from raysegment.infer.plan import Plan


def _in_ray_worker() -> bool:
    """Only a Ray worker may be ended: a driver or a test calling a stage directly must survive it."""
    import ray

    return ray.is_initialized() and ray.get_runtime_context().worker.mode == ray.WORKER_MODE


@contextlib.contextmanager
def deadline(seconds: float | None) -> Iterator[None]:
    """End this Ray worker process if the block runs longer than ``seconds`` (None: no limit)."""
    if seconds is None or not _in_ray_worker():
        yield
        return
    faulthandler.dump_traceback_later(seconds, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


def case_deadline(plan: Plan, cases: int) -> float | None:
    """The time a stage may take over ``cases`` cases at once."""
    return None if plan.case_timeout_s is None else plan.case_timeout_s * max(cases, 1)


def cases_in(row: dict[str, Any]) -> int:
    """Cases of a unit row: a manifest unit's ``cases`` before decoding, its ``meta`` entries after."""
    return len(json.loads(row["cases"]) if "cases" in row else json.loads(row["meta"])["cases"])


def bounded(stage: Callable[..., list[dict[str, Any]]], row: dict[str, Any], plan: Plan, **kwargs: Any) -> list[dict[str, Any]]:
    """``stage(row, plan, **kwargs)`` under the deadline of the row's cases; ``flat_map(partial(bounded, stage))``."""
    with deadline(case_deadline(plan, cases_in(row))):
        return stage(row, plan, **kwargs)
