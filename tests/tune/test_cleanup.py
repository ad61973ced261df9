"""Placement groups left by a dead actor (a Ray Train controller of a stopped trial) are freed;
a live actor's and the driver's own (Tune's trial groups) are not."""

from __future__ import annotations

import time

import pytest

from raysegment.tune.cleanup import (
    orphaned_placement_groups,
    release_orphaned_placement_groups,
)

pytestmark = pytest.mark.slow


def test_groups_of_dead_actors_are_released_and_no_others(ray_session):
    import ray
    from ray.util.placement_group import (
        placement_group,
        placement_group_table,
        remove_placement_group,
    )

    @ray.remote(num_cpus=0)
    class Controller:  # reserves its workers' CPUs, as a Ray Train controller does
        def reserve(self):
            group = placement_group([{"CPU": 0.25}])
            ray.get(group.ready())
            return group

    dead, alive = Controller.remote(), Controller.remote()
    left, live = ray.get([dead.reserve.remote(), alive.reserve.remote()])
    orphan, kept = left.id.hex(), live.id.hex()
    own = placement_group([{"CPU": 0.1}])  # created by the driver, as Tune creates each trial's
    ray.get(own.ready())
    ray.kill(dead)
    for _ in range(100):  # the GCS records the actor's death shortly after the kill
        if orphan in orphaned_placement_groups():
            break
        time.sleep(0.1)
    released = release_orphaned_placement_groups()
    table = placement_group_table()
    assert orphan in released and table[orphan]["state"] == "REMOVED"
    assert kept not in released and table[kept]["state"] == "CREATED"
    assert own.id.hex() not in released and table[own.id.hex()]["state"] == "CREATED"
    for group in live, own:
        remove_placement_group(group)
