#!/usr/bin/env bash
# The nightly inference run, defined once. The KubeRay RayJob (infra/k8s/rayjob-nightly-infer.yaml)
# and `ray job submit` on a `ray up` cluster (infra/README.md) both run this file.
#
# RAYSEGMENT_DATE selects the day to process (YYYY-MM-DD); default: today in UTC, so a re-run of
# a failed night can pass the date it missed.
set -euo pipefail
cd "$(dirname "$0")/.."
exec raysegment infer --config jobs/nightly_infer.yaml --date "${RAYSEGMENT_DATE:-$(date -u +%F)}"
