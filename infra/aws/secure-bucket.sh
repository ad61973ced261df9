#!/usr/bin/env bash
# Locks down the bucket raysegment uses: no public access, SSE-KMS by default (so every object is
# encrypted even when a client sends no encryption header, as pyarrow never does), and the
# bucket policy from infra/iam/bucket-policy.json (TLS only; no upload may ask for weaker
# encryption), and a lifecycle rule that aborts unfinished multipart uploads. Safe to re-run.
#
# Usage: infra/aws/secure-bucket.sh BUCKET_NAME
set -euo pipefail

bucket=${1:?usage: secure-bucket.sh BUCKET_NAME}
iam_dir="$(cd "$(dirname "$0")/../iam" && pwd)"

aws s3api put-public-access-block --bucket "$bucket" --public-access-block-configuration \
  BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true
# The AWS-managed key (aws/s3) needs no extra KMS permissions for the node roles; the bucket key
# cuts KMS requests (and their cost) by caching a data key per bucket.
aws s3api put-bucket-encryption --bucket "$bucket" --server-side-encryption-configuration \
  '{"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}, "BucketKeyEnabled": true}]}'
# A killed writer's unfinished multipart upload is invisible but billed: abort it after a day.
aws s3api put-bucket-lifecycle-configuration --bucket "$bucket" --lifecycle-configuration \
  '{"Rules": [{"ID": "abort-unfinished-uploads", "Status": "Enabled", "Filter": {"Prefix": ""}, "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}]}'
aws s3api put-bucket-policy --bucket "$bucket" \
  --policy "$(sed -e "s|BUCKET_NAME|$bucket|g" "$iam_dir/bucket-policy.json")"
echo "secured s3://$bucket"
