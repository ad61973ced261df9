"""Where Ray runs: an existing cluster (``--address`` or ``RAY_ADDRESS``) or a local instance.

Every command that needs Ray calls :func:`init_ray`, so the same command line works on a laptop
and, unchanged, on a ``ray up`` cluster or inside a KubeRay job.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator

FORWARDED_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION")


def worker_env() -> dict[str, str]:
    """The driver's settings that every Ray worker needs: its storage configuration, ``RAYSEGMENT_*``.

    The storage configuration goes whole (endpoint, also when set by ``--s3-endpoint`` alone,
    region, timeouts, retries; :mod:`raysegment.storage_config`), so a task on a cluster node
    reaches the same store as the driver. Credentials are deliberately left out: a runtime env is
    shown on the dashboard and stored with the job, cluster nodes get theirs from an IAM role, and
    a local instance's workers inherit the driver's environment anyway.
    """
    from raysegment.storage_config import current_config

    env = {k: v for k, v in os.environ.items() if k in FORWARDED_ENV or k.startswith("RAYSEGMENT_")}
    return {**env, **current_config().env()}


def task_runtime_env() -> dict | None:
    """A runtime_env for tasks and actors when :func:`worker_env` changed after ``ray.init``, else None.

    None in the usual case: a runtime_env of their own would make Ray start a separate pool of
    worker processes (imports and all) just for them.
    """
    import ray

    wanted = worker_env()
    job = (ray.get_runtime_context().runtime_env or {}).get("env_vars") or {}
    return None if all(job.get(k) == v for k, v in wanted.items()) else {"env_vars": wanted}


def local_resources(address: str | None = None) -> dict[str, float] | None:
    """The resources of the local Ray instance this process started; None when it joined a cluster.

    Commands check their requests against it to fail fast: a request a local instance can never
    meet makes Ray wait forever. A cluster is not checked, as its autoscaler may be about to add
    the nodes asked for.
    """
    import ray

    # Inside an actor (a Tune trial running train()) someone else started Ray, perhaps a cluster.
    if (address or os.environ.get("RAY_ADDRESS")) is not None or ray.get_runtime_context().get_actor_id() is not None:
        return None
    return ray.cluster_resources()


def check_local_request(address: str | None, wanted: dict[str, float], request: str) -> None:
    """Raise a one-line ConfigError when ``wanted`` (e.g. ``{"GPU": 2}``) exceeds a local instance's resources.

    ``request`` names the options that asked for them, for the message.
    """
    have = local_resources(address)
    if have is not None:
        check_fits(have, wanted, request)


def check_fits(have: dict[str, float], wanted: dict[str, float], request: str) -> None:
    """Raise a one-line ConfigError when ``wanted`` exceeds a local instance's resources ``have``."""
    from raysegment.errors import ConfigError

    for name, amount in wanted.items():
        if amount > have.get(name, 0.0) + 1e-9:
            raise ConfigError(f"{request} asks for {amount:g} {name} but this machine's local Ray instance has "
                              f"{have.get(name, 0.0):g}; lower it, or pass --address to run on a cluster")


#: The CLI's ``--verbose``, for every later :func:`init_ray` of the process.
_verbose = False


def set_verbose(verbose: bool) -> None:
    """``--verbose``: Ray's INFO logs and the workers' output on the driver's console (see :func:`ray_init_kwargs`)."""
    global _verbose
    _verbose = verbose


def ray_init_kwargs(address: str | None = None, num_cpus: int | None = None, verbose: bool | None = None) -> dict:
    """The arguments :func:`init_ray` passes to ``ray.init``.

    Quiet (the default): the driver's ``ray`` logger at WARNING and the workers' output left in
    their log files, so warnings and errors stay and the INFO lines of every start, actor and
    dataset go. ``verbose`` (default :func:`set_verbose`'s): INFO, and worker output on the console.
    """
    verbose = _verbose if verbose is None else verbose
    # "local" rather than None: ray.init(None) would silently join a `ray start` instance on this
    # machine, where the user asked for neither --address nor RAY_ADDRESS.
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    env_vars = worker_env()  # workers must reach the same storage endpoint as the driver
    kwargs = dict(
        address=address,
        log_to_driver=verbose,
        configure_logging=True,
        logging_level="INFO" if verbose else "WARNING",
        runtime_env={"env_vars": env_vars} if env_vars else None,
    )
    if address == "local":
        kwargs["num_cpus"] = num_cpus
        kwargs["include_dashboard"] = False
        kwargs["_system_config"] = LOCAL_SYSTEM_CONFIG
    return kwargs


#: Ray's settings for a local instance. Ray ends an idle worker process after one second once more
#: than one per CPU exist; an inference run's predictors, decode, write and Ray Data's own tasks
#: exceed that on a small machine, so between two tasks a worker was ended and the next one started
#: again (Python, Ray, pandas: seconds each on 2 cores). A night of 300 LGG slices took 53 s with
#: the default and 16 s with idle workers kept a minute (benchmarks/nightly.py, 2026-12-02). A
#: ``ray start`` cluster takes the same value from ``RAY_idle_worker_killing_time_threshold_ms``.
LOCAL_SYSTEM_CONFIG = {"idle_worker_killing_time_threshold_ms": 60_000}


def backend_log_level(verbose: bool | None = None) -> str | None:
    """``RAY_BACKEND_LOG_LEVEL`` for the processes ``ray.init`` starts: ``fatal`` when quiet, unless the user set one.

    Ray Data's actor pools make the driver's C++ core worker print one ERROR line per process
    ("Actor ... has constructor arguments in the object store and max_restarts > 0",
    ray-project/ray#57733): a false alarm, as Ray Data keeps those arguments alive. C++ log lines
    bypass Python's logging; this documented threshold is their only switch. It applies to the
    driver's core worker and, on a local instance, to the Ray processes ``ray.init`` starts; Python
    warnings and errors are not affected.
    """
    verbose = _verbose if verbose is None else verbose
    return None if verbose or os.environ.get("RAY_BACKEND_LOG_LEVEL") else "fatal"


def init_ray(address: str | None = None, num_cpus: int | None = None, verbose: bool | None = None):
    """Connect to Ray once per process; a no-op if Ray is already initialised.

    Args:
        address: ``ray://host:10001``, ``host:6379``, or ``auto``; default ``RAY_ADDRESS`` if set,
            else a new local instance.
        num_cpus: CPUs for a new local instance (ignored when joining a cluster).
        verbose: Ray's INFO logs on the console; default: ``--verbose`` (:func:`set_verbose`).
    """
    import ray

    if ray.is_initialized():
        return ray.get_runtime_context()
    verbose = _verbose if verbose is None else verbose
    level = backend_log_level(verbose)
    if level:  # read once by each C++ process as it starts; not left behind for anything started later
        os.environ["RAY_BACKEND_LOG_LEVEL"] = level
    if not verbose:
        _drop_start_up_notices()
    try:
        with _stderr_without(_BACKEND_LEVEL_NOTICE) if level else contextlib.nullcontext():
            context = ray.init(**ray_init_kwargs(address, num_cpus, verbose))
    finally:
        if level:
            os.environ.pop("RAY_BACKEND_LOG_LEVEL", None)
    quiet_ray_data(verbose)
    return context


# The driver's C++ core worker announces the level it read from RAY_BACKEND_LOG_LEVEL at INFO,
# whatever that level is: the one line the threshold cannot hide.
_BACKEND_LEVEL_NOTICE = "Set ray log level from environment variable RAY_BACKEND_LOG_LEVEL"

# Python-side notices Ray logs at WARNING on every run that ask nothing of a raysegment user (shown
# with --verbose): a local instance turning on token authentication by default (Ray's warning when
# it is off stays), and Ray Data's progress bars, which raysegment replaces with its own.
_START_UP_NOTICES = {
    "ray._private.authentication.authentication_token_setup": "Token authentication is enabled for this Ray cluster",
    "ray.data._internal.progress": "Progress bars disabled",
}


class _DropNotice(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)


def _drop_start_up_notices() -> None:
    for name, prefix in _START_UP_NOTICES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNotice) for f in logger.filters):
            logger.addFilter(_DropNotice(prefix))


@contextlib.contextmanager
def _stderr_without(notice: str) -> Iterator[None]:
    """File descriptor 2 into a temporary file for the block, then every line but ``notice`` back to stderr.

    C++ code writes to the descriptor, not to ``sys.stderr``. Processes the block starts inherit the
    file; Ray's own (GCS, raylet) write their output to the session's log files instead.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [line for line in capture.read().decode(errors="replace").splitlines(keepends=True) if notice not in line]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def quiet_ray_data(verbose: bool) -> None:
    """Ray Data's console lines on the driver at WARNING (INFO when verbose); its session log file keeps everything.

    ``import ray.data`` gives the ``ray.data`` logger its own console handler at INFO, outside
    ``ray.init``'s ``logging_level``: "Starting execution of Dataset ..." and its plan, per dataset.
    A configuration of the user's own (``RAY_DATA_LOGGING_CONFIG``) is left as it is.
    """
    import logging

    import ray.data  # noqa: F401  (configures the logger first, or its import would undo this)

    if os.environ.get("RAY_DATA_LOGGING_CONFIG"):
        return
    for handler in logging.getLogger("ray.data").handlers:
        if isinstance(handler, logging.StreamHandler):  # the console; the file handler is no stream handler
            handler.setLevel(logging.INFO if verbose else logging.WARNING)
