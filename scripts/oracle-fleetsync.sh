#!/usr/bin/env bash
# A stand-in for the `fleetsync` binary built on MariaDB's native replication, to check that the
# e2e tests themselves are right: a test that fails against this known-good replicator is a bug
# in the test, not in fleetsync. Only for the configs the tests write (first [[servers]] entry =
# source, second = target, root without password).
#
#   FLEETSYNC_BIN=$PWD/scripts/oracle-fleetsync.sh cargo test -p fleetsync-tests --test e2e \
#     -- all_column_types hundred_k kill9 alter_table trinitycore
#
# `run` points the target at the source (CHANGE MASTER … MASTER_USE_GTID=slave_pos) and waits
# for SIGTERM; `status --json` prints the documented shape. It checks no input, so the
# bad_input tests fail against it by design.
set -euo pipefail

cmd=${1:-}
shift || true
config=""
while [[ $# -gt 0 ]]; do
    case $1 in
        --config) config=$2; shift 2 ;;
        *) shift ;;
    esac
done
[[ -n $config ]] || { echo "oracle: --config is required" >&2; exit 2; }
mapfile -t ports < <(grep -E '^url = ' "$config" | sed -E 's/.*:([0-9]+)".*/\1/')
src=${ports[0]}
dst=${ports[1]}
q() { mariadb --no-defaults -h127.0.0.1 -P"$1" -uroot -N -B -e "$2"; }

case $cmd in
    run)
        if [[ -z "$(q "$dst" 'SHOW SLAVE STATUS')" ]]; then
            q "$dst" "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$src, MASTER_USER='root',
                      MASTER_USE_GTID=slave_pos; START SLAVE;"
        fi
        echo "oracle: replicating 127.0.0.1:$src -> 127.0.0.1:$dst"
        trap 'echo "oracle: stopping"; exit 0' TERM INT
        while true; do sleep 0.2; done
        ;;
    status)
        pos=$(q "$src" 'SHOW MASTER STATUS' | awk '{print $1 ":" $2}')
        gtid=$(q "$src" 'SELECT @@gtid_binlog_pos')
        applied=$(q "$dst" 'SELECT @@gtid_slave_pos')
        printf '{"syncs":[{"name":"s1","source":"src","source_position":"%s@%s","targets":[{"name":"dst","applied_position":"%s","lag_seconds":0,"state":"streaming","warnings":[]}]}]}\n' \
            "$pos" "$gtid" "${applied:-none}"
        ;;
    *)
        echo "oracle: unknown command '$cmd'" >&2
        exit 2
        ;;
esac
