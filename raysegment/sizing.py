"""How much of the machine ``train``, ``tune`` and ``infer`` take, and the line that says so.

On a local Ray instance (no ``--address``, no ``RAY_ADDRESS``) the machine is all there is: a CPU
count the job leaves unset (``cpus_per_worker: null``, the default) is chosen to fit it, a 2-core
laptop included. With ``C`` the local instance's CPUs:

* train: 1 CPU (:data:`DATA_CPUS`) stays free for the Ray Data tasks that read and preprocess
  scans; the ``workers`` share the rest.
* tune: the same CPU stays free; as many trials run at once as the samples, ``max_concurrent``,
  the GPUs and 1 CPU per worker allow (at least one), and their workers and drivers share the rest.
  The number of workers (of a run, of a trial) stays the job's: 1 by default.
* infer: a quarter of ``C`` (at least :data:`IO_TASK_CPUS`) decodes and writes scans; on CPUs, one
  predictor actor per CPU left (rounded up) shares the rest, as several single-threaded predictors
  beat one multi-threaded one (2 cores: 2 predictors x 0.75 CPU); on GPUs, one per GPU share, with
  at most 1 CPU each.

Shares are rounded down to a twentieth of a CPU. Values the job sets are kept, and checked against the
machine so that a request it can never meet fails at once (Ray would wait forever). On a cluster
the job's values stand (1 CPU per worker when unset) and nothing is checked: the autoscaler adds
nodes for what is asked. Every command prints :meth:`Sizing.line`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from raysegment.errors import ConfigError
from raysegment.runtime import check_fits

#: CPUs left free for the Ray Data tasks that read and preprocess scans while training runs (one
#: task takes one CPU); without them, workers holding every CPU would wait forever for their data.
DATA_CPUS = 1.0
#: What a worker gets on a cluster when the job does not say.
CLUSTER_CPUS_PER_WORKER = 1.0
#: The smallest CPU share a worker is given; a machine that leaves less is an error.
MIN_CPUS_PER_WORKER = 0.1
#: CPUs of one infer decode or write task (they partly wait on storage); a local instance must keep
#: at least this much beside the predictors.
IO_TASK_CPUS = 0.5


@dataclass(frozen=True)
class Sizing:
    """What a command runs with.

    Attributes:
        command: ``train``, ``tune`` or ``infer``.
        workers: training workers (of each trial, for tune) or predictor actors.
        cpus_per_worker: CPUs reserved by each of them.
        gpus_per_worker: GPUs of each of them.
        local: the local instance's resources; None on a cluster.
        chosen: ``cpus_per_worker`` was chosen here to fit the machine (the job left it unset).
        concurrent: tune: trials at a time (None: no cap).
        driver_cpus: tune: CPUs of each trial's driver.
        io_cpus: infer: CPUs left to the tasks that decode and write scans.
    """

    command: str
    workers: int
    cpus_per_worker: float
    gpus_per_worker: float
    local: dict[str, float] | None
    chosen: bool
    concurrent: int | None = None
    driver_cpus: float = 0.0
    io_cpus: float = 0.0

    def line(self) -> str:
        """One line: where it runs, what it takes, and whether the machine or the job decided."""
        role = "predictor" if self.command == "infer" else "worker"
        gpus = f" + {self.gpus_per_worker:g} GPU" if self.gpus_per_worker else ""
        each = f"{self.workers} {role}{'s' if self.workers > 1 else ''} x {self.cpus_per_worker:g} CPU{gpus}"
        if self.command == "tune":
            trials = "no cap on trials at a time" if self.concurrent is None else \
                f"{self.concurrent} trial{'s' if self.concurrent > 1 else ''} at a time"
            each = f"{trials}, each {each} + {self.driver_cpus:g} CPU driver"
        if self.local is None:
            return f"{self.command} on a Ray cluster: {each} (as the job asks; the autoscaler adds nodes)"
        rest = {"infer": f"{self.io_cpus:g} CPU for reading and writing scans"}.get(self.command, f"{DATA_CPUS:g} CPU for data loading")
        how = "chosen to fit this machine; --cpus-per-worker sets it" if self.chosen else "as the job asks"
        return (f"{self.command} on local Ray ({self.local.get('CPU', 0):g} CPU, {self.local.get('GPU', 0):g} GPU): "
                f"{each}; {rest} ({how})")


def _share(cpus: float, parts: float) -> float:
    """``cpus / parts`` rounded down to a twentieth of a CPU."""
    return math.floor(cpus / parts * 20 + 1e-6) / 20


def _at_least_min(cpus_per_worker: float, what: str, cpus: float) -> float:
    if cpus_per_worker < MIN_CPUS_PER_WORKER:
        raise ConfigError(f"{what} on this machine's {cpus:g} CPUs leaves under {MIN_CPUS_PER_WORKER:g} CPU per worker; "
                          "lower it, or pass --address to run on a cluster")
    return cpus_per_worker


def size_train(local: dict[str, float] | None, workers: int, cpus_per_worker: float | None, gpus_per_worker: float) -> Sizing:
    """CPUs per training worker (see the module docstring).

    Args:
        local: :func:`raysegment.runtime.local_resources` (None on a cluster).
        cpus_per_worker: the job's value; None to choose.

    Raises:
        ConfigError: the workers cannot fit a local instance.
    """
    chosen = cpus_per_worker is None and local is not None
    if local is None:
        cpus_per_worker = cpus_per_worker or CLUSTER_CPUS_PER_WORKER
    elif cpus_per_worker is None:
        cpus = local.get("CPU", 0.0)
        cpus_per_worker = _at_least_min(_share(cpus - DATA_CPUS, workers), f"--workers {workers}", cpus)
    if local is not None:
        check_fits(local, {"CPU": workers * cpus_per_worker, "GPU": workers * gpus_per_worker},
                   f"--workers {workers} x (--cpus-per-worker {cpus_per_worker:g}, --gpus-per-worker {gpus_per_worker:g})")
    return Sizing("train", workers, cpus_per_worker, gpus_per_worker, local, chosen)


def max_concurrent_trials(cluster: dict[str, float], workers: int, cpus_per_worker: float, gpus_per_worker: float,
                          driver_cpus: float, requested: int | None = None) -> int:
    """How many trials fit the cluster at once (at most ``requested``), keeping :data:`DATA_CPUS` free.

    Raises:
        ConfigError: when not even one trial fits.
    """
    cpus_per_trial = workers * cpus_per_worker + driver_cpus
    free_cpus = cluster.get("CPU", 0) - DATA_CPUS
    limits = [math.floor(free_cpus / cpus_per_trial + 1e-9)] if cpus_per_trial > 0 else []
    if gpus_per_worker > 0:
        limits.append(math.floor(cluster.get("GPU", 0) / (workers * gpus_per_worker) + 1e-9))
    fits = min(limits) if limits else 1
    if fits < 1:
        raise ConfigError(f"one trial needs {cpus_per_trial:g} CPU and {workers * gpus_per_worker:g} GPU, plus "
                          f"{DATA_CPUS:g} CPU for data loading; the cluster has {cluster.get('CPU', 0):g} CPU and "
                          f"{cluster.get('GPU', 0):g} GPU (lower --cpus-per-worker or --workers-per-trial)")
    return min(fits, requested) if requested else fits


def size_tune(local: dict[str, float] | None, samples: int, workers: int, cpus_per_worker: float | None,
              gpus_per_worker: float, driver_cpus: float, max_concurrent: int | None = None) -> Sizing:
    """CPUs per trial worker and trials at a time (see the module docstring).

    Args:
        local: :func:`raysegment.runtime.local_resources` (None on a cluster).
        samples: trials of the search (more at once would idle).
        cpus_per_worker: the job's value; None to choose.
        max_concurrent: the job's cap on trials at a time, if any.

    Raises:
        ConfigError: not even one trial fits a local instance.
    """
    if local is None:
        return Sizing("tune", workers, cpus_per_worker or CLUSTER_CPUS_PER_WORKER, gpus_per_worker, None, False,
                      concurrent=max_concurrent, driver_cpus=driver_cpus)
    if cpus_per_worker is not None:
        concurrent = max_concurrent_trials(local, workers, cpus_per_worker, gpus_per_worker, driver_cpus, max_concurrent)
        return Sizing("tune", workers, cpus_per_worker, gpus_per_worker, local, False, concurrent=concurrent, driver_cpus=driver_cpus)
    free = local.get("CPU", 0.0) - DATA_CPUS
    limits = [samples, math.floor(free / (workers + driver_cpus) + 1e-9)]  # trials at 1 CPU per worker
    if max_concurrent:
        limits.append(max_concurrent)
    if gpus_per_worker > 0:
        limits.append(math.floor(local.get("GPU", 0.0) / (workers * gpus_per_worker) + 1e-9))
    concurrent = max(1, min(limits))  # at least one trial, whose workers then share what there is
    cpus_per_worker = _at_least_min(_share(max(free / concurrent - driver_cpus, 0.0), workers),
                                    f"--workers-per-trial {workers}", local.get("CPU", 0.0))
    max_concurrent_trials(local, workers, cpus_per_worker, gpus_per_worker, driver_cpus)  # GPUs it lacks fail here
    return Sizing("tune", workers, cpus_per_worker, gpus_per_worker, local, True, concurrent=concurrent, driver_cpus=driver_cpus)


def size_infer(local: dict[str, float] | None, workers: int | None, cpus_per_worker: float | None, gpus_per_worker: float) -> Sizing:
    """Predictor actors and their CPUs (see the module docstring); the job's values are checked by ``infer.run.io_tasks``.

    Args:
        local: :func:`raysegment.runtime.local_resources` (None on a cluster).
        workers, cpus_per_worker: the job's values; None to choose.
    """
    if local is None:
        return Sizing("infer", workers or 1, cpus_per_worker or CLUSTER_CPUS_PER_WORKER, gpus_per_worker, None, False)
    chosen = workers is None or cpus_per_worker is None
    cpus = local.get("CPU", 0.0)
    left = cpus - max(IO_TASK_CPUS, cpus / 4)  # for the predictors
    if gpus_per_worker > 0:
        workers = workers or max(1, math.floor(local.get("GPU", 0.0) / gpus_per_worker + 1e-9))
        cpus_per_worker = cpus_per_worker or min(1.0, _share(left, workers))  # the GPU does the work
    elif workers is None and cpus_per_worker is None:
        workers = max(1, math.ceil(left - 1e-9))  # single-threaded predictors beat one multi-threaded one
        cpus_per_worker = _share(left, workers)
    elif workers is None:
        workers = max(1, math.floor(left / cpus_per_worker + 1e-9))
    elif cpus_per_worker is None:
        cpus_per_worker = _share(left, workers)
    if chosen:
        _at_least_min(cpus_per_worker, f"--workers {workers}", cpus)
    return Sizing("infer", workers, cpus_per_worker, gpus_per_worker, local, chosen, io_cpus=cpus - workers * cpus_per_worker)
