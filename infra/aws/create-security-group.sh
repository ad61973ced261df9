#!/usr/bin/env bash
# Pre-creates the security group cluster.yaml names (provider.security_group.GroupName), with
# SSH open only to your network. Ray's cluster launcher uses an existing group of that name and
# leaves its rules alone; without this script it creates the group itself with SSH open to
# 0.0.0.0/0. Either way no Ray port (GCS 6379, dashboard 8265, client 10001) is reachable from
# outside the group: you reach the dashboard through `ray dashboard cluster.yaml` (SSH tunnel).
#
# Usage: infra/aws/create-security-group.sh SSH_CIDR [VPC_ID]
#   SSH_CIDR  who may SSH to the nodes, e.g. "$(curl -s https://checkip.amazonaws.com)/32"
#   VPC_ID    default: the region's default VPC (where `ray up` launches unless you set SubnetIds)
# Environment: GROUP_NAME (default raysegment-ray-sg), AWS_REGION / AWS_DEFAULT_REGION.
set -euo pipefail

ssh_cidr=${1:?usage: create-security-group.sh SSH_CIDR [VPC_ID]}
vpc_id=${2:-}
group_name=${GROUP_NAME:-raysegment-ray-sg}

case "$ssh_cidr" in
  0.0.0.0/0 | ::/0)
    echo "refusing to open SSH to the whole internet ($ssh_cidr); give your own network's CIDR" >&2
    exit 2 ;;
  */*) ;;
  *) echo "SSH_CIDR must be a CIDR such as 203.0.113.7/32, got '$ssh_cidr'" >&2; exit 2 ;;
esac

if [[ -z "$vpc_id" ]]; then
  vpc_id=$(aws ec2 describe-vpcs --filters Name=is-default,Values=true \
    --query 'Vpcs[0].VpcId' --output text)
  [[ "$vpc_id" != "None" ]] || { echo "no default VPC in this region; pass VPC_ID" >&2; exit 2; }
fi

group_id=$(aws ec2 describe-security-groups \
  --filters "Name=group-name,Values=$group_name" "Name=vpc-id,Values=$vpc_id" \
  --query 'SecurityGroups[0].GroupId' --output text)
if [[ "$group_id" == "None" ]]; then
  group_id=$(aws ec2 create-security-group --group-name "$group_name" --vpc-id "$vpc_id" \
    --description "raysegment Ray cluster: SSH from $ssh_cidr, all traffic within the group" \
    --query GroupId --output text)
fi

authorize() {  # IpPermissions JSON; a rule that already exists is fine
  local err
  if ! err=$(aws ec2 authorize-security-group-ingress --group-id "$group_id" \
      --ip-permissions "$1" 2>&1 >/dev/null); then
    [[ "$err" == *InvalidPermission.Duplicate* ]] || { echo "$err" >&2; exit 1; }
  fi
}
# Ray's nodes talk to each other on many ports (GCS, raylets, object managers, workers).
authorize "[{\"IpProtocol\": \"-1\", \"UserIdGroupPairs\": [{\"GroupId\": \"$group_id\"}]}]"
if [[ "$ssh_cidr" == *:* ]]; then
  ssh_range="\"Ipv6Ranges\": [{\"CidrIpv6\": \"$ssh_cidr\"}]"
else
  ssh_range="\"IpRanges\": [{\"CidrIp\": \"$ssh_cidr\"}]"
fi
authorize "[{\"IpProtocol\": \"tcp\", \"FromPort\": 22, \"ToPort\": 22, $ssh_range}]"
echo "$group_id"
