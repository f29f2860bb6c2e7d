#!/usr/bin/env bash
# Long stress of bidirectional groups: every `bidi_converges_*` test of tests/e2e/bidi.rs
# (strategies x 3/5 members x embedded/Kafka x fleetsync/member/broker SIGKILLed), each run
# for seeds 1..=FLEETSYNC_STRESS_SEEDS (default 20) on fresh servers, one at a time.
#
#   tests/bench/bidi_stress.sh                                   # all variants, 20 seeds each
#   FLEETSYNC_STRESS_SEEDS=2 tests/bench/bidi_stress.sh          # a smoke run
#   BIDI_STRESS_FILTER='manual|kafka' tests/bench/bidi_stress.sh    # variants whose name matches (ERE)
#
# Every seed prints a `BIDI_RESULT {json}` line (variant, seed, ok, writes, deletes, conflicts
# logged on the first member, diverged, secs). This script sums them into ONE JSON line on
# stdout:
#   {"runs":N,"ok":N,"failed":N,"divergent":N,"writes":N,"deletes":N,"conflicts":N,
#    "seeds":S,"secs":T,"log":"...","variants":{"<strategy>/<members>/<bus>/<fault>":{...}}}
# "divergent" counts runs whose members ended unequal or not as the oracle says; "failed"
# counts every failed run (divergent or not, e.g. a server that did not start). The full
# test output goes to target/bench/bidi-stress-<time>.log. Exit status 1 if any run failed.
# FLEETSYNC_BIDI_SECS (default 8) sets the writing time of each run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export PATH="/usr/sbin:$PATH"
export FLEETSYNC_STRESS_SEEDS="${FLEETSYNC_STRESS_SEEDS:-20}"
# An extended regular expression over the names of the bidi::bidi_converges_* tests.
filter="${BIDI_STRESS_FILTER:-.}"
mkdir -p target/bench
log="target/bench/bidi-stress-$(date -u +%Y%m%dT%H%M%SZ).log"
start=$(date +%s)
cargo build --workspace >&2
mapfile -t tests < <(cargo test -p fleetsync-tests --test e2e -- bidi::bidi_converges_ --list \
    2>/dev/null | sed -n 's/: test$//p' | grep -E "$filter" || true)
if [ "${#tests[@]}" -eq 0 ]; then
    echo "bidi_stress: no bidi_converges_* test matches $filter" >&2
    exit 2
fi
echo "bidi_stress: ${#tests[@]} variant(s) x $FLEETSYNC_STRESS_SEEDS seed(s): ${tests[*]}" >&2
status=0
cargo test -p fleetsync-tests --test e2e -- --exact "${tests[@]}" --test-threads=1 --nocapture \
    >"$log" 2>&1 || status=$?
secs=$(( $(date +%s) - start ))
# `--nocapture` may print a test's first line after the harness's "test NAME ... ": match
# anywhere in the line.
grep -o 'BIDI_RESULT {.*}' "$log" | sed 's/^BIDI_RESULT //' | jq -s -c \
    --argjson seeds "$FLEETSYNC_STRESS_SEEDS" --argjson secs "$secs" --arg log "$log" '
    {runs: length,
     ok: (map(select(.ok)) | length),
     failed: (map(select(.ok | not)) | length),
     divergent: (map(select(.diverged)) | length),
     writes: (map(.writes) | add // 0),
     deletes: (map(.deletes) | add // 0),
     conflicts: (map(.conflicts) | add // 0),
     seeds: $seeds, secs: $secs, log: $log,
     variants: (group_by(.variant) | map({key: .[0].variant, value: {
         runs: length,
         failed: (map(select(.ok | not)) | length),
         divergent: (map(select(.diverged)) | length),
         writes: (map(.writes) | add)}}) | from_entries)}'
if [ "$status" -ne 0 ]; then
    echo "bidi_stress: cargo test exited $status (see $log)" >&2
    exit 1
fi
