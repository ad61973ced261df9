#!/usr/bin/env bash
# Creates the IAM roles and instance profiles that cluster.yaml names, with least-privilege
# inline policies rendered from infra/iam/*.json. Safe to re-run: policies are overwritten,
# existing roles and profiles are kept.
#
# Usage: [PREFIX=raysegment/] infra/aws/setup-iam.sh BUCKET [BUCKET ...]
#   BUCKET   every bucket raysegment reads or writes (data, models, results)
# Environment:
#   PREFIX             key prefix the nodes may touch in each bucket (default: the whole bucket)
#   CLUSTER_NAME       cluster_name in cluster.yaml (default raysegment): the head may only
#                      terminate instances tagged with it
#   EKS_OIDC_PROVIDER  e.g. oidc.eks.us-west-2.amazonaws.com/id/ABC123: also create the IRSA
#                      role that infra/k8s/raycluster.yaml's service account assumes
set -euo pipefail

[[ $# -ge 1 ]] || { echo "usage: [PREFIX=raysegment/] setup-iam.sh BUCKET [BUCKET ...]" >&2; exit 2; }
prefix=${PREFIX:-}
cluster_name=${CLUSTER_NAME:-raysegment}
iam_dir="$(cd "$(dirname "$0")/../iam" && pwd)"
account=$(aws sts get-caller-identity --query Account --output text)

# The policy templates name one bucket; each of its ARNs becomes the list of all buckets' ARNs.
bucket_arns=""
object_arns=""
for bucket in "$@"; do
  bucket_arns+="${bucket_arns:+, }\"arn:aws:s3:::$bucket\""
  object_arns+="${object_arns:+, }\"arn:aws:s3:::$bucket/$prefix*\""
done

render() {
  sed -e "s|\"arn:aws:s3:::BUCKET_NAME/PREFIX\*\"|$object_arns|g" \
      -e "s|\"arn:aws:s3:::BUCKET_NAME\"|$bucket_arns|g" -e "s|ACCOUNT_ID|$account|g" \
      -e "s|CLUSTER_NAME|$cluster_name|g" -e "s|OIDC_PROVIDER|${EKS_OIDC_PROVIDER:-}|g" \
      "$iam_dir/$1"
}

ensure_role() {  # name trust-policy-file
  if ! aws iam get-role --role-name "$1" >/dev/null 2>&1; then
    aws iam create-role --role-name "$1" --assume-role-policy-document "$(render "$2")" >/dev/null
    echo "created role $1"
  fi
}

ensure_instance_profile() {  # name (role of the same name)
  local roles
  if ! roles=$(aws iam get-instance-profile --instance-profile-name "$1" \
      --query 'InstanceProfile.Roles[].RoleName' --output text 2>/dev/null); then
    aws iam create-instance-profile --instance-profile-name "$1" >/dev/null
    echo "created instance profile $1"
    roles=""
  fi
  if [[ " $roles " != *" $1 "* ]]; then
    aws iam add-role-to-instance-profile --instance-profile-name "$1" --role-name "$1"
  fi
}

put_policy() {  # role policy-name policy-file
  aws iam put-role-policy --role-name "$1" --policy-name "$2" --policy-document "$(render "$3")"
}

for role in raysegment-ray-head raysegment-ray-worker; do
  ensure_role "$role" ec2-trust-policy.json
  put_policy "$role" raysegment-s3-access raysegment-s3-policy.json
  ensure_instance_profile "$role"
done
# Only the head launches and terminates workers (Ray's autoscaler runs there).
put_policy raysegment-ray-head raysegment-ray-autoscaler ray-head-autoscaler-policy.json

if [[ -n "${EKS_OIDC_PROVIDER:-}" ]]; then
  ensure_role raysegment-ray-irsa irsa-trust-policy.json
  put_policy raysegment-ray-irsa raysegment-s3-access raysegment-s3-policy.json
  echo "IRSA role: arn:aws:iam::$account:role/raysegment-ray-irsa"
fi
