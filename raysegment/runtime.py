"""Where Ray runs: an existing cluster (``--address`` or ``RAY_ADDRESS``) or a local instance.

Every command that needs Ray calls :func:`init_ray`, so the same command line works on a laptop
and, unchanged, on a ``ray up`` cluster or inside a KubeRay job.
"""

from __future__ import annotations

import os

FORWARDED_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION")


def worker_env() -> dict[str, str]:
    """The driver's settings that every Ray worker needs: storage endpoint, region, ``RAYSEGMENT_*``.

    Credentials are deliberately left out: a runtime env is shown on the dashboard and stored with
    the job, cluster nodes get theirs from an IAM role, and a local instance's workers inherit the
    driver's environment anyway.
    """
    return {k: v for k, v in os.environ.items() if k in FORWARDED_ENV or k.startswith("RAYSEGMENT_")}


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
    from raysegment.errors import ConfigError

    have = local_resources(address)
    if have is None:
        return
    for name, amount in wanted.items():
        if amount > have.get(name, 0.0) + 1e-9:
            raise ConfigError(f"{request} asks for {amount:g} {name} but this machine's local Ray instance has "
                              f"{have.get(name, 0.0):g}; lower it, or pass --address to run on a cluster")


def init_ray(address: str | None = None, num_cpus: int | None = None, quiet: bool = True):
    """Connect to Ray once per process; a no-op if Ray is already initialised.

    Args:
        address: ``ray://host:10001``, ``host:6379``, or ``auto``; default ``RAY_ADDRESS`` if set,
            else a new local instance.
        num_cpus: CPUs for a new local instance (ignored when joining a cluster).
    """
    import ray

    if ray.is_initialized():
        return ray.get_runtime_context()
    # "local" rather than None: ray.init(None) would silently join a `ray start` instance on this
    # machine, where the user asked for neither --address nor RAY_ADDRESS.
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    env_vars = worker_env()  # workers must reach the same storage endpoint as the driver
    kwargs = dict(
        address=address,
        log_to_driver=not quiet,
        configure_logging=True,
        logging_level="ERROR" if quiet else "INFO",
        runtime_env={"env_vars": env_vars} if env_vars else None,
    )
    if address == "local":
        kwargs["num_cpus"] = num_cpus
        kwargs["include_dashboard"] = False
    return ray.init(**kwargs)
