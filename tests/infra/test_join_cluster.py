"""A raysegment process with RAY_ADDRESS set joins that cluster (token auth on) instead of starting Ray.

Subprocesses only: the suite's in-process ``ray_session`` may be running at the same time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import json, ray
from raysegment.runtime import init_ray

init_ray()
node = ray._private.worker.global_worker.node

@ray.remote
def where():
    return ray.get_runtime_context().get_node_id()

print(json.dumps({
    "gcs_address": ray.get_runtime_context().gcs_address,
    "session_dir": node.get_session_dir_path(),
    "task_node": ray.get(where.remote()),
    "cluster_nodes": [n["NodeID"] for n in ray.nodes() if n["Alive"]],
}))
"""


def _probe(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROBE], env=env, cwd=REPO, capture_output=True, text=True, timeout=600)


def test_init_ray_joins_the_cluster_named_by_ray_address(local_ray_cluster):
    result = _probe(local_ray_cluster.env)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["gcs_address"] == local_ray_cluster.address
    # A freshly started local instance would keep its session under /tmp/ray, not here.
    assert Path(seen["session_dir"]).is_relative_to(local_ray_cluster.temp_dir)
    assert seen["cluster_nodes"] == [seen["task_node"]]  # the cluster's one node ran the task


def test_a_client_without_the_token_is_refused(local_ray_cluster, tmp_path):
    env = {k: v for k, v in local_ray_cluster.env.items() if not k.startswith("RAY_AUTH_")}
    env["HOME"] = str(tmp_path)  # no ~/.ray/auth_token to fall back on
    result = _probe(env)
    assert result.returncode != 0
    assert "token authentication" in result.stderr
