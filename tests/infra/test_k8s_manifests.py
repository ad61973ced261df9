"""infra/k8s: KubeRay RayCluster, the nightly RayJob and the CronJob that creates it."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "infra" / "k8s"
CRON_FIELDS = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]  # minute hour day month weekday


def _docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d is not None]


def _one(name: str, kind: str) -> dict:
    (doc,) = [d for d in _docs(name) if d["kind"] == kind]
    return doc


def _containers(pod_template: dict) -> list[dict]:
    return pod_template["spec"]["containers"]


def _valid_cron(expression: str) -> bool:
    """A standard five-field cron expression (numbers, *, ranges, lists, steps)."""
    fields = expression.split()
    if len(fields) != len(CRON_FIELDS):
        return False
    for field, (low, high) in zip(fields, CRON_FIELDS):
        for part in field.split(","):
            match = re.fullmatch(r"(\*|(\d+)(?:-(\d+))?)(?:/(\d+))?", part)
            if not match:
                return False
            start, end, step = match.group(2), match.group(3), match.group(4)
            values = [int(v) for v in (start, end) if v is not None]
            if any(not low <= v <= high for v in values) or (len(values) == 2 and values[0] > values[1]):
                return False
            if step is not None and int(step) == 0:
                return False
    return True


@pytest.mark.parametrize("name", sorted(p.name for p in K8S.glob("*.yaml")))
def test_every_manifest_parses_and_is_a_kubernetes_object(name):
    docs = _docs(name)
    assert docs
    for doc in docs:
        assert doc["apiVersion"] and doc["kind"]
        if doc["kind"] != "Kustomization":
            assert doc["metadata"].get("name") or doc["metadata"].get("generateName")


def test_raycluster_head_and_gpu_workers(cluster_config):
    cluster = _one("raycluster.yaml", "RayCluster")
    assert cluster["apiVersion"] == "ray.io/v1"
    spec = cluster["spec"]
    assert spec["rayVersion"] == "2.60.0"
    assert spec["authOptions"] == {"mode": "token"}
    assert spec["enableInTreeAutoscaling"] is True

    head = spec["headGroupSpec"]
    (head_container,) = _containers(head["template"])
    assert "nvidia.com/gpu" not in head_container["resources"]["limits"]
    assert head["rayStartParams"]["num-cpus"] == "0"

    (gpu_group,) = spec["workerGroupSpecs"]
    assert 0 == gpu_group["minReplicas"] <= gpu_group["replicas"] <= gpu_group["maxReplicas"]
    assert gpu_group["maxReplicas"] >= 1
    (worker,) = _containers(gpu_group["template"])
    for kind in ("requests", "limits"):
        assert worker["resources"][kind]["nvidia.com/gpu"] == "1"
        assert worker["resources"][kind]["cpu"] and worker["resources"][kind]["memory"]

    # Same image as the `ray up` cluster, running as the image's non-root user.
    for template in (head["template"], gpu_group["template"]):
        assert [c["image"] for c in _containers(template)] == [cluster_config["docker"]["image"]]
        assert template["spec"]["securityContext"]["runAsNonRoot"] is True
        assert all(c["securityContext"]["allowPrivilegeEscalation"] is False for c in _containers(template))


def test_ray_pods_use_the_irsa_service_account():
    account = _one("raycluster.yaml", "ServiceAccount")
    role_arn = account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert role_arn == "arn:aws:iam::ACCOUNT_ID:role/raysegment-ray-irsa"  # the role setup-iam.sh creates
    spec = _one("raycluster.yaml", "RayCluster")["spec"]
    templates = [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]
    assert {t["spec"]["serviceAccountName"] for t in templates} == {account["metadata"]["name"]}
    trust = (REPO / "infra" / "iam" / "irsa-trust-policy.json").read_text()
    assert f"system:serviceaccount:raysegment:{account['metadata']['name']}" in trust
    assert "namespace: raysegment" in (K8S / "kustomization.yaml").read_text()


def test_nothing_is_exposed_outside_the_kubernetes_cluster():
    docs = [d for p in K8S.glob("*.yaml") for d in _docs(p.name)]
    assert not [d for d in docs if d["kind"] == "Ingress"]
    services = [d for d in docs if d["kind"] == "Service"]
    assert all(s["spec"].get("type", "ClusterIP") == "ClusterIP" for s in services)
    head = _one("raycluster.yaml", "RayCluster")["spec"]["headGroupSpec"]
    assert head["serviceType"] == "ClusterIP"
    assert not head.get("enableIngress", False)
    assert not any(p.get("hostPort") for d in docs for c in _pod_containers(d) for p in c.get("ports", []))


def _pod_containers(doc: dict) -> list[dict]:
    if doc["kind"] == "RayCluster":
        groups = [doc["spec"]["headGroupSpec"]] + doc["spec"].get("workerGroupSpecs", [])
        return [c for g in groups for c in _containers(g["template"])]
    if doc["kind"] == "CronJob":
        return _containers(doc["spec"]["jobTemplate"]["spec"]["template"])
    return []


def test_rayjob_runs_nightly_inference_on_the_raycluster():
    job = _one("rayjob-nightly-infer.yaml", "RayJob")
    assert job["apiVersion"] == "ray.io/v1"
    assert job["metadata"]["generateName"].endswith("-")  # a new object every night
    assert job["spec"]["clusterSelector"] == {"ray.io/cluster": _one("raycluster.yaml", "RayCluster")["metadata"]["name"]}
    # The entrypoint is the image's copy of infra/nightly-infer.sh, which runs `raysegment nightly`.
    dockerfile = (REPO / "infra" / "Dockerfile").read_text()
    workdir = re.search(r"^WORKDIR\s+(\S+)", dockerfile, re.M).group(1)
    assert re.search(r"^COPY .*infra/nightly-infer\.sh \./infra/nightly-infer\.sh$", dockerfile, re.M)
    assert job["spec"]["entrypoint"] == f"bash {workdir}/infra/nightly-infer.sh"
    assert "raysegment nightly --config jobs/nightly.yaml --date" in (REPO / "infra" / "nightly-infer.sh").read_text()


def test_cronjob_creates_the_rayjob_nightly():
    cron = _one("cronjob-nightly-infer.yaml", "CronJob")
    assert cron["apiVersion"] == "batch/v1"
    assert _valid_cron(cron["spec"]["schedule"])
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]
    (container,) = _containers(pod)
    assert container["command"][:3] == ["kubectl", "create", "-f"]
    manifest = Path(container["command"][3])

    # The manifest it creates is rayjob-nightly-infer.yaml, mounted from the generated ConfigMap.
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == str(manifest.parent))
    volume = next(v for v in pod["spec"]["volumes"] if v["name"] == mount["name"])
    kustomization = _docs("kustomization.yaml")[0]
    (generator,) = [g for g in kustomization["configMapGenerator"] if g["name"] == volume["configMap"]["name"]]
    assert generator["files"] == [manifest.name] == ["rayjob-nightly-infer.yaml"]
    assert manifest.name not in kustomization["resources"]  # created nightly, not applied
    assert all((K8S / r).is_file() for r in kustomization["resources"])


def test_cronjob_may_create_rayjobs_and_nothing_else():
    role = _one("cronjob-nightly-infer.yaml", "Role")
    assert role["rules"] == [{"apiGroups": ["ray.io"], "resources": ["rayjobs"], "verbs": ["create"]}]
    binding = _one("cronjob-nightly-infer.yaml", "RoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]}
    account = _one("cronjob-nightly-infer.yaml", "ServiceAccount")["metadata"]["name"]
    assert [(s["kind"], s["name"]) for s in binding["subjects"]] == [("ServiceAccount", account)]
    pod = _one("cronjob-nightly-infer.yaml", "CronJob")["spec"]["jobTemplate"]["spec"]["template"]
    assert pod["spec"]["serviceAccountName"] == account


@pytest.mark.parametrize(
    "expression, valid",
    [("0 2 * * *", True), ("*/15 0-6 1,15 * 1-5", True), ("0 24 * * *", False), ("0 2 * *", False),
     ("5-1 * * * *", False), ("*/0 * * * *", False), ("@daily", False)],
)
def test_the_cron_check_itself(expression, valid):
    assert _valid_cron(expression) is valid


def test_nightly_script_runs_raysegment_nightly_for_a_date(tmp_path):
    # A stand-in `raysegment` on PATH records how the script calls it.
    fake = tmp_path / "bin" / "raysegment"
    fake.parent.mkdir()
    fake.write_text('#!/usr/bin/env bash\necho "$PWD"\necho "$@"\n')
    fake.chmod(0o755)
    env = {"PATH": f"{fake.parent}:/usr/bin:/bin"}
    script = REPO / "infra" / "nightly-infer.sh"

    today = subprocess.run(["date", "-u", "+%F"], capture_output=True, text=True, check=True).stdout.strip()
    out = subprocess.run(["bash", str(script)], env=env, cwd=tmp_path, capture_output=True, text=True, check=True)
    cwd, args = out.stdout.splitlines()
    assert Path(cwd).resolve() == REPO  # relative config paths resolve against the repository / image root
    assert args in (f"nightly --config jobs/nightly.yaml --date {d}" for d in (today, _utc_today()))

    out = subprocess.run(["bash", str(script)], env={**env, "RAYSEGMENT_DATE": "2024-02-29"}, cwd=tmp_path,
                         capture_output=True, text=True, check=True)
    assert out.stdout.splitlines()[1] == "nightly --config jobs/nightly.yaml --date 2024-02-29"


def _utc_today() -> str:
    import datetime

    return datetime.datetime.now(datetime.timezone.utc).date().isoformat()


def test_kustomize_renders_the_deployment():
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl not installed")
    rendered = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, check=True).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    assert {d["metadata"]["namespace"] for d in docs} == {"raysegment"}
    assert sorted(d["kind"] for d in docs) == sorted(
        ["ServiceAccount", "ServiceAccount", "Role", "RoleBinding", "ConfigMap", "RayCluster", "CronJob"])
    (config_map,) = [d for d in docs if d["kind"] == "ConfigMap"]
    assert yaml.safe_load(config_map["data"]["rayjob-nightly-infer.yaml"]) == _one("rayjob-nightly-infer.yaml", "RayJob")
    (cron,) = [d for d in docs if d["kind"] == "CronJob"]
    volumes = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["volumes"]
    # kustomize suffixes the ConfigMap's name with a content hash and rewrites the reference.
    assert config_map["metadata"]["name"] in [v.get("configMap", {}).get("name") for v in volumes]
