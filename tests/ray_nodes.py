"""A Ray cluster of several nodes on this machine, each started with ``ray start``, for tests to join and to break.

Every node is one ``ray start --block`` process with its own temp dir and free ports; its Ray
processes are that process's descendants, so a test can end one node as a lost machine ends (all
its processes at once) and never touches another Ray instance running here. Token authentication
is on, as on a ``ray up`` cluster.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

# Every listener a node opens; the head alone has a GCS port.
_NODE_PORTS = ["--node-manager-port", "--object-manager-port", "--metrics-export-port", "--dashboard-agent-listen-port",
               "--dashboard-agent-grpc-port", "--runtime-env-agent-port"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _children() -> dict[int, list[int]]:
    """Every process's children, from /proc (psutil is no dependency)."""
    tree: dict[int, list[int]] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except (OSError, ValueError):
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])  # the name in parentheses may hold spaces
        tree.setdefault(parent, []).append(int(entry))
    return tree


def _descendants(pid: int) -> list[int]:
    tree, found, todo = _children(), [], [pid]
    while todo:
        kids = tree.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def _title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


@dataclass
class RayNode:
    """One ``ray start --block`` process and everything it started."""

    process: subprocess.Popen
    log: Path
    temp_dir: Path

    def wait_up(self, timeout_s: float = 240) -> str:
        """Wait until the node is up; returns the cluster's GCS address, which `ray start` then records in its temp dir."""
        address_file = self.temp_dir / "ray_current_cluster"
        deadline = time.monotonic() + timeout_s
        while not address_file.exists() or not address_file.read_text().strip():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray start failed:\n{self.log.read_text()[-4000:]}")
            time.sleep(0.2)
        return address_file.read_text().strip()

    def running(self, *names: str) -> bool:
        """Whether a worker process of this node runs a task or holds an actor whose title holds one of ``names``.

        Ray titles a worker ``ray::<task or actor>`` (``ray::IDLE`` when it has none).
        """
        titles = [_title(pid) for pid in _descendants(self.process.pid)]
        return any(t.startswith("ray::") and any(name in t for name in names) for t in titles)

    def kill(self) -> None:
        """SIGKILL the node's processes all at once, as a lost machine ends: no process gets to say goodbye."""
        for pid in [self.process.pid, *_descendants(self.process.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait()


@dataclass
class LocalCluster:
    """Nodes started one by one under ``root``; the first is the head.

    Attributes:
        root: a short folder (Ray's Unix socket paths are limited to 107 bytes).
        env: the environment of every node, and of a driver once :attr:`driver_env` adds the address.
    """

    root: Path
    env: dict[str, str]
    nodes: list[RayNode] = field(default_factory=list)
    address: str = ""

    @classmethod
    def create(cls, root: Path, env: dict[str, str]) -> LocalCluster:
        token = root / "auth_token"
        token.write_text(secrets.token_hex(32))
        token.chmod(0o600)
        env = {k: v for k, v in env.items() if not k.startswith("RAY_")}
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token), RAY_USAGE_STATS_ENABLED="0",
                   # How long a raylet waits for its node's agents, and `ray start` for the raylet (15 s
                   # and 60 s by default): on 2 busy cores the Python start-ups alone can take longer.
                   RAY_agent_register_timeout_ms="120000", RAY_raylet_start_wait_time_s="120",
                   # Idle workers are kept, not ended after a second: each new one imports torch
                   # again, and a test's datasets, retries and actor restarts would start dozens.
                   RAY_idle_worker_killing_time_threshold_ms="600000")
        return cls(root, env)

    @property
    def driver_env(self) -> dict[str, str]:
        return {**self.env, "RAY_ADDRESS": self.address}

    def add_node(self, num_cpus: int, object_store_mb: int = 200, wait: bool = True) -> RayNode:
        """Start a node, the head if it is the first; ``wait`` until it is up (the head always: the others need its address).

        Only what a node needs to run tasks starts: no autoscaler monitor, no log monitor (drivers
        read no worker output), no dashboard; each is a Python process that costs seconds to start.
        """
        index = len(self.nodes)
        command = [str(Path(sys.executable).with_name("ray")), "start", "--block", "--node-ip-address=127.0.0.1",
                   f"--num-cpus={num_cpus}", f"--object-store-memory={object_store_mb * 2**20}", "--disable-usage-stats",
                   "--include-log-monitor=false", f"--temp-dir={self.root / f'node{index}'}", *(f"{flag}={free_port()}" for flag in _NODE_PORTS)]
        if self.nodes:
            command.append(f"--address={self.address}")
        else:
            command += ["--head", f"--port={free_port()}", "--include-dashboard=false", "--no-monitor"]
        if not Path(command[0]).exists():
            command[0] = shutil.which("ray") or "ray"
        log = self.root / f"node{index}.log"
        with open(log, "w") as out:
            process = subprocess.Popen(command, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        node = RayNode(process, log, self.root / f"node{index}")
        self.nodes.append(node)
        if wait or index == 0:
            self.address = self.address or node.wait_up()
        return node

    def stop(self) -> None:
        """Kill every node: a test cluster keeps nothing worth an orderly shutdown, which takes many seconds."""
        for node in reversed(self.nodes):
            node.kill()
