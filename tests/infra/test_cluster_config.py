"""cluster.yaml: valid for Ray 2.60's autoscaler, GPU worker types, IAM profiles, token auth, no secrets."""

from __future__ import annotations

import re

import pytest

GPU_INSTANCE_GPUS = {"g5.xlarge": 1, "g6.xlarge": 1, "g5.12xlarge": 4}
SECRET_PATTERNS = [
    re.compile(r"\b(AKIA|ASIA)[A-Z0-9]{16}\b"),  # AWS access key IDs
    re.compile(r"aws_(access_key_id|secret_access_key|session_token)", re.I),
    re.compile(r"AWS_(ACCESS_KEY_ID|SECRET_ACCESS_KEY|SESSION_TOKEN)\s*[=:]"),
    re.compile(r"(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])"),  # secret-key shaped strings
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
]


def _worker_types(config):
    return {k: v for k, v in config["available_node_types"].items() if k != config["head_node_type"]}


def test_passes_rays_own_validation(cluster_config):
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(cluster_config)  # merges Ray's AWS defaults, as `ray up` does
    validate_config(prepared)  # Ray's JSON schema plus its cross-field checks
    # Ray's defaults would pip-install a nightly Ray wheel on every node; the image has everything.
    assert prepared["setup_commands"] == prepared["head_setup_commands"] == prepared["worker_setup_commands"] == []
    assert prepared["available_node_types"][cluster_config["head_node_type"]]["max_workers"] == 0


def test_cpu_head_and_autoscaled_gpu_worker_types(cluster_config):
    head = cluster_config["available_node_types"][cluster_config["head_node_type"]]
    assert not head["node_config"]["InstanceType"].startswith(("g", "p"))
    assert head["resources"] == {"CPU": 0}

    workers = _worker_types(cluster_config)
    by_instance = {}
    for name, node_type in workers.items():
        assert 0 == node_type["min_workers"] <= node_type["max_workers"] <= cluster_config["max_workers"], name
        by_instance.setdefault(node_type["node_config"]["InstanceType"], []).append(node_type)
    assert set(GPU_INSTANCE_GPUS) <= set(by_instance)
    on_demand_gpu = [t for i in GPU_INSTANCE_GPUS for t in by_instance[i] if "InstanceMarketOptions" not in t["node_config"]]
    assert all(t["max_workers"] >= 1 for t in on_demand_gpu)
    assert max(GPU_INSTANCE_GPUS[i] for i in by_instance if i in GPU_INSTANCE_GPUS) > 1  # a multi-GPU type


def test_spot_workers_are_an_opt_in_option(cluster_config):
    spot = [t for t in _worker_types(cluster_config).values() if "InstanceMarketOptions" in t["node_config"]]
    assert spot, "no spot worker type"
    for node_type in spot:
        assert node_type["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot"
        assert node_type["node_config"]["InstanceType"] in GPU_INSTANCE_GPUS
        assert node_type["max_workers"] == 0  # preemptible capacity only when asked for


def test_every_node_type_has_an_iam_instance_profile(cluster_config):
    head_type = cluster_config["head_node_type"]
    for name, node_type in cluster_config["available_node_types"].items():
        profile = node_type["node_config"]["IamInstanceProfile"]
        expected = "raysegment-ray-head" if name == head_type else "raysegment-ray-worker"
        assert profile == {"Name": expected}, name


def test_no_credentials_in_the_file_or_its_mounts(repo, cluster_config):
    text = (repo / "cluster.yaml").read_text()
    for pattern in SECRET_PATTERNS:
        assert not pattern.search(text), pattern.pattern
    # The only file shipped to the nodes is the Ray token; never AWS credentials or SSH keys.
    assert cluster_config["file_mounts"] == {"~/.ray/auth_token": "~/.ray/auth_token"}
    assert "ssh_private_key" not in cluster_config["auth"]
    for key in ("cluster_synced_files", "rsync_filter"):
        assert not cluster_config.get(key)


def test_no_secrets_anywhere_in_infra(repo):
    files = [p for p in (repo / "infra").rglob("*") if p.is_file()] + [repo / "README.md"]
    for path in files:
        text = path.read_text()
        for pattern in SECRET_PATTERNS:
            assert not pattern.search(text), f"{path.relative_to(repo)}: {pattern.pattern}"


def test_no_ray_port_reachable_from_the_internet(cluster_config, ray_ports_open_to_internet):
    extra_rules = cluster_config["provider"].get("security_group", {}).get("IpPermissions", [])
    assert ray_ports_open_to_internet(extra_rules) == []
    # The dashboard/job API binds to the head's loopback: only the SSH tunnel reaches it.
    head_start = " ".join(cluster_config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start
    assert "0.0.0.0" not in head_start


@pytest.mark.parametrize(
    "rule, flagged",
    [
        ({"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}, []),
        ({"IpProtocol": "tcp", "FromPort": 8000, "ToPort": 9000, "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}, [8265]),
        ({"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}, [6379, 8265, 10001]),
        ({"IpProtocol": "-1", "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}, []),
        ({"IpProtocol": "udp", "FromPort": 0, "ToPort": 65535, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}, []),
    ],
)
def test_the_port_check_itself(rule, flagged, ray_ports_open_to_internet):
    assert [port for _, port in ray_ports_open_to_internet([rule])] == flagged


def test_token_auth_is_on_everywhere(cluster_config):
    from ray._private.authentication.authentication_token_setup import (
        AUTH_MODE_ENV_VAR,
        _get_default_token_path,
    )

    # Every container gets the mode Ray 2.60 reads, and the token at the path Ray 2.60 reads it from.
    assert f"--env {AUTH_MODE_ENV_VAR}=token" in cluster_config["docker"]["run_options"]
    home_relative = "~/" + str(_get_default_token_path().relative_to(_get_default_token_path().home()))
    assert home_relative in cluster_config["file_mounts"]
