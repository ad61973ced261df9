"""Frees the workers' reservations that Ray Train leaves behind when Tune stops a trial.

Tune stops a trial (ASHA at a rung, an interrupted search) by ending its driver; the trial's
Ray Train controller dies with it, before it can remove the placement group that reserves its
workers' CPUs and GPUs. Such a group lives as long as the whole job (the search). Ray Train's
own cleaner actor removes it through Ray's State API, which is there only with the dashboard
(:func:`raysegment.runtime.init_ray` starts local Ray without one) and which fails outright when
one machine runs several Ray instances. The reservation then outlives its trial: a search
leaks one per stopped trial, and once they hold what a trial's workers need, the next trials
wait forever. :class:`ReleaseStoppedTrials` removes them from the search's driver, as Tune itself
did for Ray Train V1.
"""

from __future__ import annotations

import time

from ray.tune import Callback


def orphaned_placement_groups() -> list[str]:
    """Hex ids of this job's placement groups whose creating actor has died (none of them detached).

    Groups created by a driver (Tune's own, one per trial) have no creating actor and are left
    alone; groups of a live Train controller are left alone too.
    """
    import ray
    from ray._private.state import state
    from ray.core.generated import gcs_pb2

    job = ray.get_runtime_context().get_job_id()
    no_actor = ray.ActorID.nil().binary()  # what a driver's groups carry
    removed = gcs_pb2.PlacementGroupTableData.REMOVED
    orphans = []
    # The public placement_group_table() leaves out who created a group; the GCS record has it.
    for raw in state._connect_and_get_accessor().get_placement_group_table():
        group = gcs_pb2.PlacementGroupTableData.FromString(raw)
        if (group.state != removed and not group.is_detached and group.creator_actor_id != no_actor
                and group.creator_actor_dead and group.creator_job_id.hex() == job):
            orphans.append(group.placement_group_id.hex())
    return orphans


def release_orphaned_placement_groups() -> list[str]:
    """Remove :func:`orphaned_placement_groups`; returns their ids."""
    import ray
    from ray.util.placement_group import PlacementGroup, remove_placement_group

    orphans = orphaned_placement_groups()
    for group_id in orphans:
        remove_placement_group(PlacementGroup(ray.PlacementGroupID(bytes.fromhex(group_id))))
    return orphans


class ReleaseStoppedTrials(Callback):
    """A Tune callback (driver side): every ``interval_s`` and at the end, frees what stopped trials left.

    Tune reports a trial stopped before its driver has exited, so the sweep runs on Tune's loop
    steps rather than once per stopped trial.
    """

    def __init__(self, interval_s: float = 2.0):
        self.interval_s = interval_s
        self.last = 0.0

    def on_step_end(self, iteration, trials, **info):
        if time.monotonic() - self.last >= self.interval_s:
            self.last = time.monotonic()
            release_orphaned_placement_groups()

    def on_experiment_end(self, trials, **info):
        release_orphaned_placement_groups()
