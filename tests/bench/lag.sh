#!/usr/bin/env bash
# Steady-state lag of fleetsync per bus: catchup.sh with BENCH_LAG=1 (the lag runs at half of
# each bus's catch-up rate from the same run, or BENCH_LAG_RATE rows/s). Default BENCH_BUS=both.
# Output: catchup.sh's JSON with a "lag" object. Method: tests/bench/README.md.
set -euo pipefail
export BENCH_LAG=1
export BENCH_BUS="${BENCH_BUS:-both}"
export BENCH_WORKLOADS="${BENCH_WORKLOADS:-mixed}"  # the lag phase runs with the mixed workload
exec "$(dirname "${BASH_SOURCE[0]}")/catchup.sh" "$@"
