"""infra/iam: valid policy documents, least privilege, and the bucket's TLS and encryption guards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

INFRA = Path(__file__).resolve().parents[2] / "infra"

POLICIES = sorted((INFRA / "iam").glob("*.json"))


def _load(name: str) -> dict:
    return json.loads((INFRA / "iam" / name).read_text())


def _as_list(value) -> list:
    return [value] if isinstance(value, str) else list(value)


def _statements(name: str) -> dict[str, dict]:
    return {s.get("Sid", str(i)): s for i, s in enumerate(_load(name)["Statement"])}


def test_the_documented_policies_exist():
    assert {p.name for p in POLICIES} == {
        "raysegment-s3-policy.json", "bucket-policy.json", "ray-head-autoscaler-policy.json",
        "ec2-trust-policy.json", "irsa-trust-policy.json"}


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: p.name)
def test_valid_policy_document(path):
    policy = json.loads(path.read_text())
    assert policy["Version"] == "2012-10-17"
    assert policy["Statement"]
    for statement in policy["Statement"]:
        assert statement["Effect"] in ("Allow", "Deny")
        assert "NotAction" not in statement and "NotResource" not in statement
        assert _as_list(statement["Action"])


@pytest.mark.parametrize("name", ["raysegment-s3-policy.json", "ray-head-autoscaler-policy.json"])
def test_allow_policies_name_every_action(name):
    for statement in _load(name)["Statement"]:
        assert statement["Effect"] == "Allow"
        for action in _as_list(statement["Action"]):
            assert "*" not in action, action


def test_s3_policy_is_scoped_to_the_bucket_and_prefix():
    statements = _load("raysegment-s3-policy.json")["Statement"]
    grants = {action: _as_list(s["Resource"]) for s in statements for action in _as_list(s["Action"])}
    assert grants["s3:ListBucket"] == ["arn:aws:s3:::BUCKET_NAME"]
    for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"):
        assert grants[action] == ["arn:aws:s3:::BUCKET_NAME/PREFIX*"], action
    assert all(a.startswith("s3:") for a in grants)
    # Nothing that changes the bucket itself (policy, ACLs, encryption, deletion).
    assert not [a for a in grants if a.startswith(("s3:PutBucket", "s3:DeleteBucket", "s3:PutObjectAcl"))]


def test_head_policy_can_only_pass_the_worker_role_and_end_its_own_cluster():
    statements = _statements("ray-head-autoscaler-policy.json")
    passing = [s for s in statements.values() if "iam:PassRole" in _as_list(s["Action"])]
    assert [s["Resource"] for s in passing] == ["arn:aws:iam::ACCOUNT_ID:role/raysegment-ray-worker"]
    ending = [s for s in statements.values() if "ec2:TerminateInstances" in _as_list(s["Action"])]
    assert len(ending) == 1
    assert ending[0]["Condition"] == {"StringEquals": {"ec2:ResourceTag/ray-cluster-name": "CLUSTER_NAME"}}
    # No IAM or S3 administration, no instance stop/start (cluster.yaml terminates idle nodes).
    actions = {a for s in statements.values() for a in _as_list(s["Action"])}
    assert actions <= {"ec2:DescribeInstances", "ec2:DescribeInstanceTypes", "ec2:RunInstances",
                       "ec2:CreateTags", "ec2:TerminateInstances", "iam:PassRole", "ssm:GetParameters"}


def test_trust_policies():
    (ec2,) = _load("ec2-trust-policy.json")["Statement"]
    assert (ec2["Principal"], ec2["Action"]) == ({"Service": "ec2.amazonaws.com"}, "sts:AssumeRole")
    (irsa,) = _load("irsa-trust-policy.json")["Statement"]
    assert irsa["Action"] == "sts:AssumeRoleWithWebIdentity"
    # Only the raysegment service account of the raysegment namespace, not any pod of the cluster.
    assert irsa["Condition"]["StringEquals"]["OIDC_PROVIDER:sub"] == "system:serviceaccount:raysegment:raysegment-ray"


def test_bucket_policy_denies_plain_http():
    tls = [s for s in _load("bucket-policy.json")["Statement"]
           if s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"]
    assert len(tls) == 1
    (statement,) = tls
    assert (statement["Effect"], statement["Principal"], statement["Action"]) == ("Deny", "*", "s3:*")
    assert sorted(statement["Resource"]) == ["arn:aws:s3:::BUCKET_NAME", "arn:aws:s3:::BUCKET_NAME/*"]


def test_bucket_policy_denies_uploads_asking_for_weaker_encryption():
    sse = [s for s in _load("bucket-policy.json")["Statement"]
           if "s3:x-amz-server-side-encryption" in json.dumps(s.get("Condition", {}))]
    assert len(sse) == 1
    (statement,) = sse
    assert (statement["Effect"], statement["Principal"], statement["Action"]) == ("Deny", "*", "s3:PutObject")
    assert statement["Resource"] == "arn:aws:s3:::BUCKET_NAME/*"
    condition = statement["Condition"]
    assert condition["StringNotEquals"] == {"s3:x-amz-server-side-encryption": "aws:kms"}
    # Uploads without the header (pyarrow's, Ray Train's checkpoints) are encrypted by the bucket
    # default that infra/aws/secure-bucket.sh sets, so only a header asking for less is denied.
    assert condition["Null"] == {"s3:x-amz-server-side-encryption": "false"}
    assert '"SSEAlgorithm": "aws:kms"' in (INFRA / "aws" / "secure-bucket.sh").read_text()
