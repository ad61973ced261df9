"""infra/aws scripts and Ray's own AWS bootstrap of cluster.yaml, against a moto AWS API.

`ray up` runs ``bootstrap_aws`` before launching anything: it resolves subnets, creates or
reuses the security group and key pair, and would create Ray's over-privileged default IAM role
if the config named no instance profile. Running it here shows what a real `ray up` would set up.
"""

from __future__ import annotations

import json

import boto3
import pytest

# Each AWS CLI call starts a Python interpreter: seconds per script.
pytestmark = pytest.mark.slow

BUCKET = "mri-bucket"
RESULTS = "mri-results"
MY_NETWORK = "203.0.113.7/32"


def _bootstrap(cluster_config):
    from ray.autoscaler._private.aws.config import bootstrap_aws
    from ray.autoscaler._private.util import prepare_config

    return bootstrap_aws(prepare_config(cluster_config))


def _group_of(bootstrapped) -> dict:
    ids = {tuple(t["node_config"]["SecurityGroupIds"]) for t in bootstrapped["available_node_types"].values()}
    assert len(ids) == 1, ids  # head and workers share one group, so they can reach each other
    (group_id,) = ids.pop()
    return boto3.client("ec2").describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]


def _internet_ingress(group) -> list[tuple[str, int, int]]:
    return [
        (rule["IpProtocol"], rule.get("FromPort", -1), rule.get("ToPort", -1))
        for rule in group["IpPermissions"]
        for source in [r["CidrIp"] for r in rule["IpRanges"]] + [r["CidrIpv6"] for r in rule["Ipv6Ranges"]]
        if source in ("0.0.0.0/0", "::/0")
    ]


def test_ray_up_without_setup_opens_only_ssh(fake_aws, cluster_config, ray_ports_open_to_internet):
    bootstrapped = _bootstrap(cluster_config)
    group = _group_of(bootstrapped)
    assert group["GroupName"] == cluster_config["provider"]["security_group"]["GroupName"]
    assert ray_ports_open_to_internet(group["IpPermissions"]) == []
    assert _internet_ingress(group) == [("tcp", 22, 22)]
    # Every other rule admits only the group itself (node-to-node Ray traffic).
    for rule in group["IpPermissions"]:
        if not rule["IpRanges"] and not rule["Ipv6Ranges"]:
            assert [p["GroupId"] for p in rule["UserIdGroupPairs"]] == [group["GroupId"]]
    # cluster.yaml names instance profiles, so Ray created no role of its own (it would carry
    # AmazonEC2FullAccess and AmazonS3FullAccess).
    assert boto3.client("iam").list_roles()["Roles"] == []
    assert "IamInstanceProfile" not in bootstrapped["head_node"]


def test_documented_setup_gives_least_privilege_and_ssh_from_one_network(
    fake_aws, cluster_config, ray_ports_open_to_internet
):
    fake_aws.run("infra/aws/setup-iam.sh", BUCKET, RESULTS, PREFIX="raysegment/")
    group_id = fake_aws.run("infra/aws/create-security-group.sh", MY_NETWORK).stdout.strip()

    bootstrapped = _bootstrap(cluster_config)
    group = _group_of(bootstrapped)
    assert group["GroupId"] == group_id  # Ray reused the group and left its rules alone
    assert ray_ports_open_to_internet(group["IpPermissions"]) == []
    assert _internet_ingress(group) == []
    ssh = [r for r in group["IpPermissions"] if r["IpRanges"]]
    assert [(r["FromPort"], r["ToPort"], [x["CidrIp"] for x in r["IpRanges"]]) for r in ssh] == [(22, 22, [MY_NETWORK])]

    iam = boto3.client("iam")
    for node_type in cluster_config["available_node_types"].values():
        name = node_type["node_config"]["IamInstanceProfile"]["Name"]
        roles = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]["Roles"]
        assert [r["RoleName"] for r in roles] == [name]
    policies = {role: set(iam.list_role_policies(RoleName=role)["PolicyNames"])
                for role in ("raysegment-ray-head", "raysegment-ray-worker")}
    assert policies == {"raysegment-ray-head": {"raysegment-s3-access", "raysegment-ray-autoscaler"},
                        "raysegment-ray-worker": {"raysegment-s3-access"}}

    s3_policy = iam.get_role_policy(RoleName="raysegment-ray-worker", PolicyName="raysegment-s3-access")["PolicyDocument"]
    grants = {s["Sid"]: s["Resource"] for s in s3_policy["Statement"]}
    assert grants == {"ListTheBucket": [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{RESULTS}"],
                      "ReadWriteUnderThePrefix": [f"arn:aws:s3:::{BUCKET}/raysegment/*", f"arn:aws:s3:::{RESULTS}/raysegment/*"]}
    autoscaler = iam.get_role_policy(RoleName="raysegment-ray-head", PolicyName="raysegment-ray-autoscaler")["PolicyDocument"]
    statements = {s["Sid"]: s for s in autoscaler["Statement"]}
    assert statements["PassOnlyTheWorkerRole"]["Resource"] == "arn:aws:iam::123456789012:role/raysegment-ray-worker"
    assert statements["TagAndTerminateOnlyThisCluster"]["Condition"] == {
        "StringEquals": {"ec2:ResourceTag/ray-cluster-name": cluster_config["cluster_name"]}}
    for placeholder in ("BUCKET_NAME", "PREFIX", "ACCOUNT_ID", "CLUSTER_NAME", "OIDC_PROVIDER"):
        assert placeholder not in json.dumps(s3_policy) + json.dumps(autoscaler)


def test_setup_iam_is_rerunnable_and_creates_the_irsa_role_on_request(fake_aws):
    provider = "oidc.eks.us-west-2.amazonaws.com/id/EXAMPLE0123"
    fake_aws.run("infra/aws/setup-iam.sh", BUCKET)
    fake_aws.run("infra/aws/setup-iam.sh", BUCKET, EKS_OIDC_PROVIDER=provider)

    iam = boto3.client("iam")
    assert {r["RoleName"] for r in iam.list_roles()["Roles"]} == {
        "raysegment-ray-head", "raysegment-ray-worker", "raysegment-ray-irsa"}
    trust = iam.get_role(RoleName="raysegment-ray-irsa")["Role"]["AssumeRolePolicyDocument"]
    condition = trust["Statement"][0]["Condition"]["StringEquals"]
    assert condition == {f"{provider}:aud": "sts.amazonaws.com",
                         f"{provider}:sub": "system:serviceaccount:raysegment:raysegment-ray"}
    s3_policy = iam.get_role_policy(RoleName="raysegment-ray-irsa", PolicyName="raysegment-s3-access")["PolicyDocument"]
    assert [s["Resource"] for s in s3_policy["Statement"]] == [[f"arn:aws:s3:::{BUCKET}"], [f"arn:aws:s3:::{BUCKET}/*"]]


@pytest.mark.parametrize("cidr", ["0.0.0.0/0", "::/0"])
def test_security_group_script_refuses_the_internet(fake_aws, cidr):
    result = fake_aws.run("infra/aws/create-security-group.sh", cidr, check=False)
    assert result.returncode == 2
    assert "refusing" in result.stderr
    groups = boto3.client("ec2").describe_security_groups()["SecurityGroups"]
    assert [g["GroupName"] for g in groups if g["GroupName"] != "default"] == []


def test_security_group_script_is_rerunnable(fake_aws):
    first = fake_aws.run("infra/aws/create-security-group.sh", MY_NETWORK).stdout.strip()
    second = fake_aws.run("infra/aws/create-security-group.sh", MY_NETWORK).stdout.strip()
    assert first == second
    group = boto3.client("ec2").describe_security_groups(GroupIds=[first])["SecurityGroups"][0]
    assert len(group["IpPermissions"]) == 2


def test_secure_bucket(fake_aws):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    fake_aws.run("infra/aws/secure-bucket.sh", BUCKET)

    block = s3.get_public_access_block(Bucket=BUCKET)["PublicAccessBlockConfiguration"]
    assert all(block.values()) and len(block) == 4
    (rule,) = s3.get_bucket_encryption(Bucket=BUCKET)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    (lifecycle,) = s3.get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"]
    assert lifecycle["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1} and lifecycle["Status"] == "Enabled"
    policy = json.loads(s3.get_bucket_policy(Bucket=BUCKET)["Policy"])
    resources = json.dumps([s["Resource"] for s in policy["Statement"]])
    assert f"arn:aws:s3:::{BUCKET}/*" in resources and "BUCKET_NAME" not in resources
