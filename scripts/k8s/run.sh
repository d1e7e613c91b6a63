#!/usr/bin/env bash
# Run the two Indexed Jobs one after the other: every partition pod must succeed before any bucket
# pod starts (a bucket task also refuses to start while a map file of its bucket is missing).
#
#   scripts/k8s/run.sh [NAMESPACE]
#
# Argo Workflows or any DAG runner does the same with two steps; this is the plain kubectl form.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
ns=(${1:+--namespace "$1"})
for step in partition bucket; do
    job="probe-rows-$step"
    kubectl "${ns[@]}" delete job "$job" --ignore-not-found
    kubectl "${ns[@]}" apply -f "$here/$step-job.yaml"
    # Until the Job is Complete or Failed (kubectl wait watches one condition only, and would sit
    # out its timeout on a failed Job); a failed Job stops the chain.
    while :; do
        state=$(kubectl "${ns[@]}" get job "$job" -o jsonpath='{.status.conditions[*].type}')
        case " $state " in
            *" Complete "*) echo "k8s: $job complete" >&2; break ;;
            *" Failed "*) echo "k8s: error: $job failed; kubectl logs -l job-name=$job" >&2; exit 1 ;;
        esac
        sleep "${POLL_SECONDS:-10}"
    done
done
echo "k8s: done; results in the volume's out/<split>/bucket-*/" >&2
