#!/usr/bin/env bash
# Catch-up benchmark: how fast do native MariaDB replication (slave_parallel_threads 0 and 4)
# and fleetsync apply the same binlog backlog of >= BENCH_ROWS row events?
#
# Usage:   tests/bench/catchup.sh            (from anywhere; builds fleetsync --release itself)
# Env:     BENCH_ROWS     row events in the backlog (default 1000000)
#          BENCH_DIR      working directory (default: a new mktemp -d, removed on success)
#          BENCH_TIMEOUT  seconds each catch-up may take before it counts as failed (default 1800)
#          BENCH_IDLE_WAIT  before each timed run, wait up to this many seconds for the machine
#                         to be idle (default 300; 0: don't wait)
#          BENCH_KEEP=1   keep BENCH_DIR (data dirs, logs) even on success
#          RUST_LOG       fleetsync's log filter (default info)
#          FLEETSYNC_BIN  use this fleetsync binary instead of building target/release/fleetsync
# Output:  one JSON object on stdout (also written to target/bench/catchup-<date>.json);
#          progress and logs on stderr. Exit status 1 if any run failed or did not verify.
# Method:  see tests/bench/README.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LIB="$ROOT/tests/bench/benchlib.py"
BENCH_ROWS="${BENCH_ROWS:-1000000}"
BENCH_TIMEOUT="${BENCH_TIMEOUT:-1800}"
BENCH_IDLE_WAIT="${BENCH_IDLE_WAIT:-300}"
export RUST_LOG="${RUST_LOG:-info}"

say() { echo "[catchup $(date +%H:%M:%S)] $*" >&2; }

# --- build -------------------------------------------------------------------------------
if [[ -n "${FLEETSYNC_BIN:-}" ]]; then
    FLEETSYNC="$FLEETSYNC_BIN"
    say "using prebuilt $FLEETSYNC (FLEETSYNC_BIN)"
else
    say "building fleetsync (cargo build --release -p fleetsync)"
    (cd "$ROOT" && cargo build --release -p fleetsync >&2)
    FLEETSYNC="$ROOT/target/release/fleetsync"
fi

if [[ -n "${BENCH_DIR:-}" ]]; then
    mkdir -p "$BENCH_DIR"
    WORK="$(cd "$BENCH_DIR" && pwd)"
    OWN_WORK=0
else
    WORK="$(mktemp -d /tmp/fleetsync-catchup.XXXXXX)"
    OWN_WORK=1
fi

# --- cleanup -----------------------------------------------------------------------------
PIDS=()          # mariadbd and fleetsync processes started by this script and still running
forget_pid() {   # forget_pid PID: it has exited (its number may be reused: never signal it again)
    local keep=() p
    for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}
SUCCESS=0
cleanup() {
    local rc=$?
    set +e
    for pid in "${PIDS[@]}"; do
        kill -0 "$pid" 2>/dev/null && kill -TERM "$pid" 2>/dev/null
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && { say "pid $pid ignored SIGTERM for 30 s: SIGKILL"; kill -KILL "$pid"; }
    done
    if [[ "${BENCH_KEEP:-0}" == 1 ]]; then
        say "kept $WORK"
    elif [[ $SUCCESS == 1 && $OWN_WORK == 1 ]]; then
        rm -rf "$WORK"
    else
        # Keep logs and results for a post-mortem, drop the (large) data directories.
        rm -rf "$WORK"/*/data "$WORK"/base "$WORK"/workload.sql "$WORK"/fleetsync
        say "logs kept in $WORK"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A private copy: a concurrent rebuild of target/release cannot swap the binary mid-run.
cp "$FLEETSYNC" "$WORK/fleetsync"
FLEETSYNC="$WORK/fleetsync"
FLEETSYNC_VERSION="$("$FLEETSYNC" --version 2>/dev/null || echo unknown)"
GIT_REV="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
[[ -n "$(git -C "$ROOT" status --porcelain -- . ':!tests/bench' 2>/dev/null)" ]] && GIT_REV="$GIT_REV+uncommitted"

# --- instances ---------------------------------------------------------------------------
MARIADBD="$(command -v mariadbd || echo /usr/sbin/mariadbd)"
USER_ARGS=()
[[ $(id -u) == 0 ]] && USER_ARGS=(--user=root)

# Every instance gets the same settings, so the comparison is fair.
COMMON_ARGS=(
    --bind-address=127.0.0.1 --skip-name-resolve --character-set-server=utf8mb4
    --binlog-format=ROW --binlog-row-image=FULL --binlog-row-metadata=FULL --log-slave-updates=ON
    --innodb-buffer-pool-size=512M --innodb-flush-log-at-trx-commit=2 --sync-binlog=0
    --skip-slave-start
)

declare -A PORT PID
# start_instance NAME SERVER_ID: runs mariadbd on $WORK/NAME/data, waits until it answers.
start_instance() {
    local name=$1 id=$2 dir="$WORK/$1"
    PORT[$name]="$(python3 "$LIB" freeport)"
    "$MARIADBD" --no-defaults "${USER_ARGS[@]}" --datadir="$dir/data" --port="${PORT[$name]}" \
        --socket="$dir/mysql.sock" --pid-file="$dir/mysqld.pid" --log-error="$dir/error.log" \
        --tmpdir="$dir/tmp" --log-bin="$dir/data/binlog" --relay-log="$dir/data/relay" \
        --server-id="$id" --gtid-domain-id="$id" "${COMMON_ARGS[@]}" >>"$dir/stdout.log" 2>&1 &
    PID[$name]=$!
    PIDS+=("${PID[$name]}")
    for _ in $(seq 1 600); do
        if mariadb-admin --no-defaults -h127.0.0.1 -P"${PORT[$name]}" -uroot ping >/dev/null 2>&1; then
            say "$name: mariadbd pid ${PID[$name]} on 127.0.0.1:${PORT[$name]}"
            return 0
        fi
        kill -0 "${PID[$name]}" 2>/dev/null || break
        sleep 0.1
    done
    tail -n 30 "$dir/error.log" >&2 || true
    say "$name: mariadbd did not start"
    return 1
}
stop_instance() {
    local name=$1
    mariadb-admin --no-defaults -h127.0.0.1 -P"${PORT[$name]}" -uroot shutdown >/dev/null 2>&1 || kill -TERM "${PID[$name]}" 2>/dev/null || true
    wait "${PID[$name]}" 2>/dev/null || true
    forget_pid "${PID[$name]}"
}
sql() {  # sql NAME STATEMENTS...: batch output, no column names
    local name=$1; shift
    mariadb --no-defaults -h127.0.0.1 -P"${PORT[$name]}" -uroot -N -B -e "$*"
}
# new_copy NAME: fresh data dir for NAME from the stopped source's starting-data copy.
new_copy() {
    local dir="$WORK/$1"
    rm -rf "$dir"
    mkdir -p "$dir/tmp"
    cp -a "$WORK/base" "$dir/data"
}

say "work dir $WORK, backlog of $BENCH_ROWS row events"

# --- 1. source with starting data ----------------------------------------------------------
mkdir -p "$WORK/src/tmp"
mariadb-install-db --no-defaults "${USER_ARGS[@]}" --datadir="$WORK/src/data" \
    --auth-root-authentication-method=normal >"$WORK/src/install.log" 2>&1
start_instance src 1
MARIADB_VERSION="$(sql src "SELECT VERSION()")"
say "creating bench schema and starting data"
python3 "$LIB" schema | mariadb --no-defaults -h127.0.0.1 -P"${PORT[src]}" -uroot

# Copy the stopped source's data dir: every replica/target starts from identical data.
stop_instance src
cp -a "$WORK/src/data" "$WORK/base"
rm -f "$WORK"/base/binlog.* "$WORK"/base/relay* "$WORK"/base/master.info \
      "$WORK"/base/relay-log.info "$WORK"/base/multi-master.info
start_instance src 1

# --- 2. the backlog, with no replica connected ----------------------------------------------
say "generating workload"
python3 "$LIB" gen "$BENCH_ROWS" "$WORK/workload.sql" "$WORK/counts.json"
read -r START_FILE START_POS < <(sql src "SHOW MASTER STATUS" | cut -f1,2)
START_GTID="$(sql src "SELECT BINLOG_GTID_POS('$START_FILE', $START_POS)")"
handler() { sql src "SELECT SUM(VARIABLE_VALUE) FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME IN ('HANDLER_WRITE','HANDLER_UPDATE','HANDLER_DELETE')"; }
H0="$(handler)"
say "loading workload into source from $START_FILE:$START_POS (gtid $START_GTID)"
T0=$(date +%s.%N)
mariadb --no-defaults -h127.0.0.1 -P"${PORT[src]}" -uroot <"$WORK/workload.sql"
T1=$(date +%s.%N)
H1="$(handler)"
read -r END_FILE END_POS < <(sql src "SHOW MASTER STATUS" | cut -f1,2)
BINLOG_BYTES="$(sql src "SHOW BINARY LOGS" | awk -v s="$START_FILE" -v sp="$START_POS" -v e="$END_FILE" -v ep="$END_POS" \
    '$1==s && $1==e {print ep-sp; exit} $1==s {t=$2-sp; next} t!="" && $1!=e {t+=$2} $1==e {print t+ep; exit}')"
ROWS="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["row_events"])' "$WORK/counts.json")"
say "backlog: $ROWS row events (handler delta $((H1 - H0))), $START_FILE:$START_POS .. $END_FILE:$END_POS, $BINLOG_BYTES bytes, loaded in $(awk -v a="$T0" -v b="$T1" 'BEGIN{printf "%.1f", b-a}') s"
if [[ $((H1 - H0)) != "$ROWS" ]]; then
    say "WARNING: Handler_write+update+delete delta $((H1 - H0)) differs from the generator's $ROWS"
fi
python3 - "$WORK/meta.json" <<EOF
import json, sys
json.dump({
  "mariadb": "$MARIADB_VERSION",
  "fleetsync": "$FLEETSYNC_VERSION ($GIT_REV)",
  "start": "$START_FILE:$START_POS", "start_gtid": "$START_GTID",
  "end": "$END_FILE:$END_POS", "binlog_bytes": int("$BINLOG_BYTES" or 0),
  "handler_delta": $((H1 - H0)), "load_seconds": round($T1 - $T0, 1),
  "date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
  "settings": "mariadbd --no-defaults ${COMMON_ARGS[*]}",
}, open(sys.argv[1], "w"))
EOF

# --- 3a. native replication ------------------------------------------------------------------
for threads in 0 4; do
    name="native$threads"
    new_copy "$name"
    start_instance "$name" $((10 + threads))
    sql "$name" "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=${PORT[src]}, MASTER_USER='root', MASTER_LOG_FILE='$START_FILE', MASTER_LOG_POS=$START_POS"
    python3 "$LIB" wait-idle "$BENCH_IDLE_WAIT"
    say "native replica, slave_parallel_threads=$threads: catching up"
    python3 "$LIB" wait-native "${PORT[$name]}" "$END_FILE" "$END_POS" "$threads" "$BENCH_TIMEOUT" "$WORK/native-$threads.json" \
        "source_mariadbd=${PID[src]},replica_mariadbd=${PID[$name]}"
    python3 "$LIB" verify "${PORT[src]}" "${PORT[$name]}" "$WORK/verify-native-$threads.json"
    stop_instance "$name"
    rm -rf "$WORK/$name/data"
done

# --- 3b. fleetsync ---------------------------------------------------------------------------
new_copy fs
start_instance fs 20
POSITION="$START_FILE:$START_POS"
[[ -n "$START_GTID" ]] && POSITION="$POSITION@$START_GTID"
{
    python3 "$LIB" state-sql "$ROOT/coordinator/src/apply/state.rs"
    echo "INSERT INTO fleetsync.sync_state (sync_name, source_name, position, snapshot_state, source_commit_ts_ms, rows_applied, txns_applied, updated_at) VALUES ('bench', 'src', '$POSITION', 'done', 0, 0, 0, NOW(6));"
} | mariadb --no-defaults -h127.0.0.1 -P"${PORT[fs]}" -uroot
mkdir -p "$WORK/fs/state"
cat >"$WORK/fs/fleetsync.toml" <<EOF
state_dir = "$WORK/fs/state"
[metrics]
listen = "127.0.0.1:0"
[[servers]]
name = "src"
url = "mysql://root@127.0.0.1:${PORT[src]}"
[[servers]]
name = "dst"
url = "mysql://root@127.0.0.1:${PORT[fs]}"
[[syncs]]
name = "bench"
source = "src"
targets = ["dst"]
include = ["bench\\\\..*"]
EOF
python3 "$LIB" wait-idle "$BENCH_IDLE_WAIT"
say "fleetsync from $POSITION: catching up (log: $WORK/fs/fleetsync.log)"
FS_START=$(date +%s.%N)
NO_COLOR=1 "$FLEETSYNC" run --config "$WORK/fs/fleetsync.toml" >"$WORK/fs/fleetsync.log" 2>&1 &
FS_PID=$!
PIDS+=("$FS_PID")
python3 "$LIB" wait-fleetsync "${PORT[fs]}" "$FS_PID" "$FS_START" "$END_FILE" "$END_POS" "$BENCH_TIMEOUT" "$WORK/fleetsync.json" \
    "source_mariadbd=${PID[src]},target_mariadbd=${PID[fs]}" "$WORK/fs/fleetsync.log"
"$FLEETSYNC" status --config "$WORK/fs/fleetsync.toml" --json >"$WORK/fs/status.json" 2>>"$WORK/fs/fleetsync.log" || true
kill -TERM "$FS_PID" 2>/dev/null || true
FS_RC=0
wait "$FS_PID" || FS_RC=$?
forget_pid "$FS_PID"
say "fleetsync exited with status $FS_RC; status: $(tr -d '\n' <"$WORK/fs/status.json")"
say "fleetsync log (warnings/errors and last lines):"
{ grep -E 'WARN|ERROR' "$WORK/fs/fleetsync.log" | head -n 40 || true; echo ...; tail -n 15 "$WORK/fs/fleetsync.log"; } | sed 's/^/  | /' >&2
python3 "$LIB" verify "${PORT[src]}" "${PORT[fs]}" "$WORK/verify-fleetsync.json"
stop_instance fs

# --- 4. report -----------------------------------------------------------------------------
mkdir -p "$ROOT/target/bench"
OUT="$ROOT/target/bench/catchup-$(date +%Y%m%d-%H%M%S).json"
python3 "$LIB" report "$WORK" "$OUT"
say "result written to $OUT"
OK="$(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
runs = [r["native"]["threads_0"], r["native"]["threads_4"], r["fleetsync"]]
print(int(all(x["verified"] and x["seconds"] and "error" not in x for x in runs)))' "$OUT")"
if [[ $OK != 1 ]]; then
    say "FAILED: a run did not finish or did not verify (see the JSON)"
    exit 1
fi
SUCCESS=1
