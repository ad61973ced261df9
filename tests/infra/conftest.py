"""Fixtures for the deployment files: their paths, a private AWS API (moto) for the setup
scripts and Ray's AWS bootstrap, and a separate local Ray cluster that commands can join."""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
RAY_PORTS = (6379, 8265, 10001)  # GCS, dashboard/job API, Ray Client
INTERNET = {"0.0.0.0/0", "::/0"}


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def cluster_config() -> dict:
    """cluster.yaml exactly as `ray up` reads it."""
    return yaml.safe_load((REPO / "cluster.yaml").read_text())


@pytest.fixture(scope="session")
def ray_ports_open_to_internet():
    """A function listing the (rule, port) pairs of EC2 ingress rules that admit the internet to a Ray port."""

    def check(ip_permissions: list[dict]) -> list[tuple[dict, int]]:
        found = []
        for rule in ip_permissions:
            sources = {r.get("CidrIp") for r in rule.get("IpRanges", [])}
            sources |= {r.get("CidrIpv6") for r in rule.get("Ipv6Ranges", [])}
            if not sources & INTERNET or str(rule.get("IpProtocol")) not in ("-1", "tcp", "6"):
                continue
            # Protocol -1 means every port whatever FromPort/ToPort say.
            every_port = str(rule["IpProtocol"]) == "-1" or rule.get("FromPort", -1) == -1
            low, high = (0, 65535) if every_port else (rule["FromPort"], rule["ToPort"])
            found += [(rule, port) for port in RAY_PORTS if low <= port <= high]
        return found

    return check


# ------------------------------------------------------------------------------------ AWS (moto)


@dataclasses.dataclass(frozen=True)
class FakeAws:
    """A moto server standing in for AWS; ``env`` points the AWS CLI and boto3 at it."""

    endpoint: str
    env: dict[str, str]

    def run(self, *command: str, check: bool = True, **extra_env: str) -> subprocess.CompletedProcess:
        """Run a command (from the repository root) against the fake AWS."""
        result = subprocess.run(command, env={**self.env, **extra_env}, cwd=REPO, capture_output=True, text=True)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr}")
        return result


@pytest.fixture(scope="session")
def _moto_server():
    from moto.server import ThreadedMotoServer

    # Not the suite's s3_server: these tests reset all state between tests.
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def fake_aws(_moto_server, tmp_path, monkeypatch) -> FakeAws:
    """Empty AWS (IAM, EC2, S3, STS) in us-west-2, for subprocesses and for boto3 in this process.

    HOME moves to a temporary folder, where Ray's bootstrap writes the SSH key it creates.
    """
    import requests

    requests.post(f"{_moto_server}/moto-api/reset", timeout=30).raise_for_status()
    values = {
        "AWS_ENDPOINT_URL": _moto_server,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-west-2",
        "AWS_REGION": "us-west-2",
        "HOME": str(tmp_path),
    }
    for key in ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    # Ray caches boto3 clients per region; drop any made before this endpoint was set.
    from ray.autoscaler._private.aws import utils as aws_utils

    aws_utils.client_cache.cache_clear()
    aws_utils.resource_cache.cache_clear()
    return FakeAws(endpoint=_moto_server, env=dict(os.environ))


# ------------------------------------------------------------------------- a local Ray cluster


@dataclasses.dataclass(frozen=True)
class LocalRayCluster:
    """A Ray cluster started with ``ray start --head`` in its own temp dir, with token auth on.

    Attributes:
        address: GCS address (``host:port``) as Ray itself records it.
        temp_dir: the cluster's ``--temp-dir``; its session folders live here.
        env: environment for a subprocess that should join the cluster (``RAY_ADDRESS`` and the
            token set), e.g. ``subprocess.run(["raysegment", ...], env=cluster.env)``.
    """

    address: str
    temp_dir: Path
    env: dict[str, str]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(process: subprocess.Popen) -> None:
    """Stop the ``ray start --block`` process we started and every process in its group."""
    if process.poll() is None:
        # --block turns SIGTERM into an orderly shutdown of the GCS, raylet and workers.
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # stragglers of this group only
    except ProcessLookupError:
        pass
    process.wait()


@pytest.fixture(scope="session")
def local_ray_cluster():
    """A separate local Ray cluster (2 CPUs, no dashboard) for subprocesses to join.

    Independent of the in-process ``ray_session`` fixture: its own temp dir, free ports for
    every listener, and token authentication, as on a `ray up` cluster. Stopped by process
    group, never with a machine-wide ``ray stop``.
    """
    from ray._private.parameter import get_ray_client_dependency_error

    # Short path: Ray's Unix sockets live under it and their paths are limited to 107 bytes.
    temp_dir = Path(tempfile.mkdtemp(prefix="rs-ray-", dir="/tmp"))
    token = temp_dir / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token), RAY_USAGE_STATS_ENABLED="0")

    ports = ["--port", "--node-manager-port", "--object-manager-port", "--metrics-export-port",
             "--dashboard-agent-listen-port", "--dashboard-agent-grpc-port", "--runtime-env-agent-port"]
    if get_ray_client_dependency_error() is None:
        ports.append("--ray-client-server-port")  # else no client server starts (default 10001)
    command = [str(Path(sys.executable).with_name("ray")), "start", "--head", "--block",
               "--node-ip-address=127.0.0.1", "--num-cpus=2", "--include-dashboard=false",
               "--disable-usage-stats", f"--temp-dir={temp_dir / 'ray'}"]
    command += [f"{flag}={_free_port()}" for flag in ports]
    if not Path(command[0]).exists():
        command[0] = shutil.which("ray") or "ray"
    log = open(temp_dir / "ray-start.log", "w")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        # `ray start` records the GCS address in its temp dir once the head node is up.
        address_file = temp_dir / "ray" / "ray_current_cluster"
        deadline = time.monotonic() + 300
        while not address_file.exists() or not address_file.read_text().strip():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray start failed:\n{(temp_dir / 'ray-start.log').read_text()[-4000:]}")
            time.sleep(0.5)
        address = address_file.read_text().strip()
        yield LocalRayCluster(address=address, temp_dir=temp_dir, env={**env, "RAY_ADDRESS": address})
    finally:
        _stop(process)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)
