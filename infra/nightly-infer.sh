#!/usr/bin/env bash
# The nightly job, defined once. The KubeRay RayJob (infra/k8s/rayjob-nightly-infer.yaml) and
# `ray job submit` on a `ray up` cluster (infra/README.md) both run this file: one command finds the
# archive's new scans, segments them, records them in the ledger and writes the night's report.
#
# RAYSEGMENT_DATE selects the night (YYYY-MM-DD); default: today in UTC, so a re-run of a failed
# night can pass the date it missed (re-running a night finishes it; nothing done is redone).
set -euo pipefail
cd "$(dirname "$0")/.."
exec raysegment nightly --config jobs/nightly.yaml --date "${RAYSEGMENT_DATE:-$(date -u +%F)}"
