#!/usr/bin/env bash
# Catch-up benchmark matrix: for each workload, how fast do native MariaDB replication
# (slave_parallel_threads 0 and 4) and fleetsync (embedded bus, Kafka bus) apply the same binlog
# backlog of >= BENCH_ROWS row events?
#
# Usage:   tests/bench/catchup.sh            (from anywhere; builds fleetsync --release itself)
# Env:     BENCH_WORKLOADS  comma-separated workloads, in the matrix's order whatever the list's:
#                         oltp, bulk, update, fk, wide, mixed (default all; see README.md)
#          BENCH_ROWS     row events in each workload's backlog (default 400000; wide: a fifth)
#          BENCH_DIR      working directory (default: a new mktemp -d, removed on success)
#          BENCH_TIMEOUT  seconds each catch-up may take before it counts as failed (default 1800)
#          BENCH_IDLE_WAIT  before each timed run, wait up to this many seconds for the machine
#                         to be idle (default 300; 0: don't wait)
#          BENCH_KEEP=1   keep BENCH_DIR (data dirs, logs) even on success
#          RUST_LOG       fleetsync's log filter (default info)
#          FLEETSYNC_BIN  use this fleetsync binary instead of building target/release/fleetsync
#          BENCH_BUS      both (default: one after the other), embedded (`fleetsync run`) or kafka
#                         (`fleetsync agent` + `fleetsync coordinator` over Apache Kafka)
#          BENCH_BROKER   the Kafka broker: kafka (the only one: Apache Kafka 4.4.0, one KRaft
#                         node started by this script from tests/kafka/fetch.sh's jars, own data
#                         dir, free ports, heap BENCH_KAFKA_HEAP, default -Xmx1g)
#          BENCH_DEBEZIUM=1  (workload mixed only) also Debezium side by side (needs java and mvn): Debezium 3.5's
#                         MariaDB connector under Kafka Connect standalone vs `fleetsync agent`,
#                         capture only, then Debezium source + JDBC sink vs fleetsync agent +
#                         coordinator into a MariaDB target (implies the Kafka bus run);
#                         BENCH_CONNECT_HEAP (default -Xms256m -Xmx2g, connect-standalone.sh's),
#                         BENCH_DEBEZIUM_SCHEMAS (capture run's JsonConverter schemas.enable,
#                         default false: Debezium's lightest JSON)
#          BENCH_LAG=1    (workload mixed only) afterwards, measure steady-state lag per bus (what lag.sh does);
#                         BENCH_LAG_RATE (rows/s; default: half the bus's catch-up rate),
#                         BENCH_LAG_SECONDS (30), BENCH_LAG_TXNS (transactions/s, 200)
#          BENCH_APPLY_LANES  `[[syncs]] apply_lanes` of every fleetsync run (default 1; 1-16)
# Output:  one JSON object per workload on stdout, one line each, as each workload finishes;
#          all of them in target/bench/catchup-<date>.json ({"matrix": [...], "table": ...});
#          progress, logs and a summary table on stderr. Exit status 1 if any run failed or
#          did not verify.
# Method:  see tests/bench/README.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LIB="$ROOT/tests/bench/benchlib.py"
BENCH_ROWS="${BENCH_ROWS:-400000}"
WORKLOADS="$(python3 "$LIB" workloads "${BENCH_WORKLOADS:-all}")" || exit 2
BENCH_TIMEOUT="${BENCH_TIMEOUT:-1800}"
BENCH_IDLE_WAIT="${BENCH_IDLE_WAIT:-300}"
export RUST_LOG="${RUST_LOG:-info}"
export BENCH_BUS="${BENCH_BUS:-both}"
case "$BENCH_BUS" in
    embedded | kafka | both) ;;
    *) echo "BENCH_BUS must be embedded, kafka or both (not $BENCH_BUS)" >&2; exit 2 ;;
esac
BENCH_BROKER="${BENCH_BROKER:-kafka}"
case "$BENCH_BROKER" in
    kafka) ;;
    mock | tansu) echo "BENCH_BROKER=$BENCH_BROKER is gone: the benchmark runs on Apache Kafka (BENCH_BROKER=kafka)" >&2; exit 2 ;;
    *) echo "BENCH_BROKER must be kafka (not $BENCH_BROKER)" >&2; exit 2 ;;
esac
export BENCH_BROKER
BENCH_DEBEZIUM="${BENCH_DEBEZIUM:-0}"
# The Debezium end-to-end run is compared with fleetsync's Kafka run: make sure there is one.
[[ $BENCH_DEBEZIUM == 1 && $BENCH_BUS == embedded ]] && BENCH_BUS=both
BENCH_KAFKA_HEAP="${BENCH_KAFKA_HEAP:--Xmx1g}"
BENCH_CONNECT_HEAP="${BENCH_CONNECT_HEAP:--Xms256m -Xmx2g}"
BENCH_DEBEZIUM_SCHEMAS="${BENCH_DEBEZIUM_SCHEMAS:-false}"
BENCH_LAG="${BENCH_LAG:-0}"
BENCH_LAG_SECONDS="${BENCH_LAG_SECONDS:-30}"
BENCH_LAG_TXNS="${BENCH_LAG_TXNS:-200}"
BENCH_APPLY_LANES="${BENCH_APPLY_LANES:-1}"
if ! [[ $BENCH_APPLY_LANES =~ ^[0-9]+$ ]] || (( BENCH_APPLY_LANES < 1 || BENCH_APPLY_LANES > 16 )); then
    echo "BENCH_APPLY_LANES must be a number from 1 to 16 (not $BENCH_APPLY_LANES)" >&2; exit 2
fi
if [[ ($BENCH_DEBEZIUM == 1 || $BENCH_LAG == 1) && " $WORKLOADS " != *" mixed "* ]]; then
    echo "BENCH_DEBEZIUM=1 and BENCH_LAG=1 run with the mixed workload: add mixed to BENCH_WORKLOADS ($WORKLOADS)" >&2
    exit 2
fi

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
if [[ $BENCH_BUS != embedded || $BENCH_DEBEZIUM == 1 ]]; then
    say "fetching Apache Kafka's jars (tests/kafka/fetch.sh kafka; cached after the first run)"
    KAFKA_JARS="$("$ROOT/tests/kafka/fetch.sh" kafka)"
fi
if [[ $BENCH_DEBEZIUM == 1 ]]; then
    say "fetching Kafka Connect + Debezium (tests/kafka/fetch.sh debezium)"
    DEBEZIUM_JARS="$("$ROOT/tests/kafka/fetch.sh" debezium)"
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
PIDS=()          # mariadbd, fleetsync, Kafka and Kafka Connect processes started by this script and still running
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
        rm -rf "$WORK"/*/data "$WORK"/base "$WORK"/srcbase "$WORK"/workload.sql "$WORK"/fleetsync "$WORK"/kafka/data
        say "logs kept in $WORK"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A private copy (a hard link where it can: the binary is large): a concurrent rebuild of
# target/release replaces the file, not this inode, so it cannot swap the binary mid-run.
ln -f "$FLEETSYNC" "$WORK/fleetsync" 2>/dev/null || cp "$FLEETSYNC" "$WORK/fleetsync"
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
# new_copy NAME [COPY]: fresh data dir for NAME from the stopped source's starting-data copy
# (COPY: base, without binlogs, for replicas and targets; srcbase, the source's own, for it).
new_copy() {
    local dir="$WORK/$1"
    rm -rf "$dir"
    mkdir -p "$dir/tmp"
    cp -a "$WORK/${2:-base}" "$dir/data"
}

say "work dir $WORK, workloads: $WORKLOADS; backlogs of $BENCH_ROWS row events (wide: a fifth)"

# --- 1. source with starting data ----------------------------------------------------------
mkdir -p "$WORK/src/tmp"
mariadb-install-db --no-defaults "${USER_ARGS[@]}" --datadir="$WORK/src/data" \
    --auth-root-authentication-method=normal >"$WORK/src/install.log" 2>&1
start_instance src 1
MARIADB_VERSION="$(sql src "SELECT VERSION()")"
say "creating bench schema and starting data"
python3 "$LIB" schema "${WORKLOADS// /,}" | mariadb --no-defaults -h127.0.0.1 -P"${PORT[src]}" -uroot

# Copy the stopped source's data dir: every replica/target starts from identical data.
stop_instance src
cp -a "$WORK/src/data" "$WORK/base"
rm -f "$WORK"/base/binlog.* "$WORK"/base/relay* "$WORK"/base/master.info \
      "$WORK"/base/relay-log.info "$WORK"/base/multi-master.info
# The source's own data dir, binlogs included: each workload's source starts from it, with the
# GTID state the schema's creation left (a source with an empty GTID state is not what users
# have, and Debezium's MariaDB connector fails on one).
mv "$WORK/src/data" "$WORK/srcbase"
rm -rf "$WORK/src"

# --- Apache Kafka: one broker for every Kafka run (each run has its own topics) -------------
# start_kafka: one KRaft node (broker + controller) on free ports, data in $WORK/kafka/data;
# sets BOOTSTRAP and BROKER_PID.
start_kafka() {
    local d="$WORK/kafka" port cport
    mkdir -p "$d"
    port="$(python3 "$LIB" freeport)"
    cport="$(python3 "$LIB" freeport)"
    cat >"$d/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$d/data
num.partitions=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
file.delete.delay.ms=1000
EOF
    java -cp "$KAFKA_JARS/*" kafka.tools.StorageTool format -c "$d/server.properties" --standalone \
        -t "$(java -cp "$KAFKA_JARS/*" kafka.tools.StorageTool random-uuid)" >"$d/format.log" 2>&1
    # shellcheck disable=SC2086 # the heap options are several words
    java $BENCH_KAFKA_HEAP -Dlog4j2.configurationFile="$KAFKA_JARS/log4j2.properties" -cp "$KAFKA_JARS/*" \
        kafka.Kafka "$d/server.properties" >"$d/broker.log" 2>&1 &
    BROKER_PID=$!
    PIDS+=("$BROKER_PID")
    BOOTSTRAP="127.0.0.1:$port"
    python3 "$LIB" kafka-ready "$BOOTSTRAP" 120 || { tail -n 30 "$d/broker.log" >&2; return 1; }
    say "Apache Kafka (KRaft, one node) pid $BROKER_PID at $BOOTSTRAP ($BENCH_KAFKA_HEAP)"
}
stop_pid() {  # stop_pid PID LABEL: SIGTERM, wait, report the exit status
    local rc=0
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" || rc=$?
    forget_pid "$1"
    say "$2 exited with status $rc"
}
if [[ $BENCH_BUS != embedded || $BENCH_DEBEZIUM == 1 ]]; then
    start_kafka
fi

# --- Debezium: Kafka Connect standalone ---------------------------------------------------
# start_connect NAME SCHEMAS CONNECTOR_FILE...: a Connect worker in $WORK/NAME (offsets in
# $WORK/NAME/connect.offsets), JsonConverter with schemas.enable=SCHEMAS, producers with lz4
# like fleetsync's; sets CONNECT_PID.
start_connect() {
    local name=$1 schemas=$2 d="$WORK/$1"
    shift 2
    mkdir -p "$d"
    cat >"$d/worker.properties" <<EOF
bootstrap.servers=$BOOTSTRAP
key.converter=org.apache.kafka.connect.json.JsonConverter
value.converter=org.apache.kafka.connect.json.JsonConverter
key.converter.schemas.enable=$schemas
value.converter.schemas.enable=$schemas
offset.storage.file.filename=$d/connect.offsets
offset.flush.interval.ms=500
listeners=http://127.0.0.1:$(python3 "$LIB" freeport)
plugin.discovery=only_scan
producer.compression.type=lz4
consumer.auto.offset.reset=earliest
EOF
    # shellcheck disable=SC2086 # the heap options are several words
    java $BENCH_CONNECT_HEAP -Dlog4j2.configurationFile="$DEBEZIUM_JARS/log4j2.properties" -cp "$DEBEZIUM_JARS/*" \
        org.apache.kafka.connect.cli.ConnectStandalone "$d/worker.properties" "$@" >"$d/connect.log" 2>&1 &
    CONNECT_PID=$!
    PIDS+=("$CONNECT_PID")
}
# debezium_source FILE [ROUTE]: Debezium's MariaDB connector reading `bench` on the source
# from the offset primed below (snapshot.mode=no_data: schema only, no rows), one message per
# row event (no tombstones, like fleetsync's bus topic); ROUTE renames its topics
# dbz.bench.T -> ROUTE.bench.T so that each run has its own.
debezium_source() {
    cat >"$1" <<EOF
name=dbzsrc
connector.class=io.debezium.connector.mariadb.MariaDbConnector
tasks.max=1
database.hostname=127.0.0.1
database.port=${PORT[src]}
database.user=root
database.password=
database.server.id=5401
topic.prefix=dbz
database.include.list=bench
schema.history.internal=io.debezium.storage.file.history.FileSchemaHistory
schema.history.internal.file.filename=$WORK/dbz-history.dat
snapshot.mode=no_data
tombstones.on.delete=false
EOF
    if [[ -n ${2:-} ]]; then
        printf '%s\n' "transforms=route" "transforms.route.type=org.apache.kafka.connect.transforms.RegexRouter" \
            'transforms.route.regex=dbz\\.bench\\.(.*)' "transforms.route.replacement=$2.bench.\$1" >>"$1"
    fi
}
# Prime Debezium before the backlog exists: a no_data snapshot stores the source's current
# binlog position (= the backlog's start) as the connector's offset. Each timed run restores
# that offset and schema history, so Debezium reads exactly the backlog, as fleetsync's
# --start-at does.
prime_debezium() {
    debezium_source "$WORK/dbzprime.properties"
    start_connect dbzprime false "$WORK/dbzprime.properties"
    for _ in $(seq 1 1200); do
        grep -q "$START_FILE" "$WORK/dbzprime/connect.offsets" 2>/dev/null && break
        kill -0 "$CONNECT_PID" 2>/dev/null || break
        sleep 0.1
    done
    sleep 1
    stop_pid "$CONNECT_PID" "Kafka Connect (priming Debezium)"
    if ! grep -q "$START_FILE" "$WORK/dbzprime/connect.offsets" 2>/dev/null; then
        tail -n 40 "$WORK/dbzprime/connect.log" >&2
        say "Debezium priming did not store an offset in $START_FILE"
        return 1
    fi
    cp "$WORK/dbzprime/connect.offsets" "$WORK/dbz-primed.offsets"
    cp "$WORK/dbz-history.dat" "$WORK/dbz-primed-history.dat"
    say "Debezium primed at the backlog's start"
}
# restore_debezium NAME: the primed offset and schema history for a Connect worker in $WORK/NAME.
restore_debezium() {
    mkdir -p "$WORK/$1"
    cp "$WORK/dbz-primed.offsets" "$WORK/$1/connect.offsets"
    cp "$WORK/dbz-primed-history.dat" "$WORK/dbz-history.dat"
}

# --- per-workload phases -----------------------------------------------------------------
# prepare_target NAME SERVER_ID POSITION: a fresh instance from the copy, with fleetsync's state
# tables and a finished-snapshot row at POSITION (bus_offset NULL), so fleetsync streams from it.
prepare_target() {
    new_copy "$1"
    start_instance "$1" "$2"
    {
        python3 "$LIB" state-sql "$ROOT/coordinator/src/apply/state.rs"
        echo "INSERT INTO fleetsync.sync_state (sync_name, source_name, position, snapshot_state, source_commit_ts_ms, rows_applied, txns_applied, updated_at) VALUES ('bench', 'src', '$3', 'done', 0, 0, 0, NOW(6));"
    } | mariadb --no-defaults -h127.0.0.1 -P"${PORT[$1]}" -uroot
    mkdir -p "$WORK/$1/state"
}
# write_config NAME [BOOTSTRAP]: $WORK/NAME/fleetsync.toml (Kafka bus when BOOTSTRAP is given,
# topic prefix NAME-WORKLOAD: each run has its own topics on the one broker, replication factor 1).
write_config() {
    local bus=""
    [[ -n "${2:-}" ]] && bus=$'[bus]\nkind = "kafka"\nbrokers = "'"$2"$'"\ntopic_prefix = "'"$1-$W"$'"\nreplication_factor = 1\n'
    cat >"$WORK/$1/fleetsync.toml" <<EOF
state_dir = "$WORK/$1/state"
$bus[metrics]
listen = "127.0.0.1:0"
[[servers]]
name = "src"
url = "mysql://root@127.0.0.1:${PORT[src]}"
[[servers]]
name = "dst"
url = "mysql://root@127.0.0.1:${PORT[$1]}"
[[syncs]]
name = "bench"
source = "src"
targets = ["dst"]
include = ["bench\\\\..*"]
apply_lanes = $BENCH_APPLY_LANES
EOF
}
# start_kafka_fleetsync NAME [START_AT]: `fleetsync agent --server src` and `fleetsync
# coordinator` on $WORK/NAME/fleetsync.toml; sets AGENT_PID and COORD_PID.
start_kafka_fleetsync() {
    local d="$WORK/$1"
    NO_COLOR=1 "$FLEETSYNC" agent --config "$d/fleetsync.toml" --server src ${2:+--start-at "$2"} \
        >"$d/agent.log" 2>&1 &
    AGENT_PID=$!
    PIDS+=("$AGENT_PID")
    NO_COLOR=1 "$FLEETSYNC" coordinator --config "$d/fleetsync.toml" >"$d/coordinator.log" 2>&1 &
    COORD_PID=$!
    PIDS+=("$COORD_PID")
}
# keep_logs NAME: NAME's logs, status and metrics into $RUN/logs/NAME (its dir is reused by the
# next workload).
keep_logs() {
    mkdir -p "$RUN/logs/$1"
    cp "$WORK/$1"/*.log "$WORK/$1"/*.txt "$WORK/$1"/status.json "$WORK/$1"/fleetsync.toml "$RUN/logs/$1/" 2>/dev/null || true
}
show_log() {  # show_log FILE LABEL: warnings/errors and last lines
    say "$2 log (warnings/errors and last lines):"
    { grep -E 'WARN|ERROR' "$1" | head -n 40 || true; echo ...; tail -n 15 "$1"; } | sed 's/^/  | /' >&2
}
# lag_phase BUS: a fresh target from the copy, streaming from the source's current position;
# a writer inserts at a fixed rate into bench.lag_BUS (created on both sides, not binlogged on
# the source) while the target is polled (benchlib.py lag).
lag_phase() {
    local bus=$1 name="lag$1" out="$RUN/lag-$1.json" rate="${BENCH_LAG_RATE:-}" result
    local suffix=""
    [[ $bus == kafka ]] && suffix="-kafka"
    result="$RUN/fleetsync$suffix.json"
    local basis="BENCH_LAG_RATE"
    if [[ -z $rate ]]; then
        rate="$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(round(int(sys.argv[2])/r["seconds"]/2) if r.get("seconds") and "error" not in r else "")' "$result" "$ROWS")"
        [[ -z $rate ]] && { say "lag $bus: no catch-up rate measured (set BENCH_LAG_RATE): skipped"; return 0; }
        basis="half the $bus catch-up rate of this run"
        if [[ "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["verified"])' "$RUN/verify-fleetsync$suffix.json")" != True ]]; then
            basis="$basis (that run did NOT verify: its rate is not a valid maximum)"
            say "lag $bus: WARNING: the catch-up run this rate comes from did not verify"
        fi
    fi
    local table="bench.lag_$bus" pos file fpos gtid
    read -r file fpos < <(sql src "SHOW MASTER STATUS" | cut -f1,2)
    gtid="$(sql src "SELECT BINLOG_GTID_POS('$file', $fpos)")"
    pos="$file:$fpos"
    [[ -n $gtid ]] && pos="$pos@$gtid"
    prepare_target "$name" $([[ $bus == kafka ]] && echo 31 || echo 30) "$pos"
    sql src "SET sql_log_bin=0; $(python3 "$LIB" lag-table-sql "$table")"
    sql "$name" "$(python3 "$LIB" lag-table-sql "$table")"
    local pids
    if [[ $bus == kafka ]]; then
        write_config "$name" "$BOOTSTRAP"
    else
        write_config "$name"
    fi
    python3 "$LIB" wait-idle "$BENCH_IDLE_WAIT"
    if [[ $bus == kafka ]]; then
        start_kafka_fleetsync "$name" "$pos"
        pids="fleetsync_agent=$AGENT_PID,fleetsync_coordinator=$COORD_PID,broker=$BROKER_PID"
    else
        NO_COLOR=1 "$FLEETSYNC" run --config "$WORK/$name/fleetsync.toml" >"$WORK/$name/fleetsync.log" 2>&1 &
        FS_PID=$!
        PIDS+=("$FS_PID")
        pids="fleetsync=$FS_PID"
    fi
    say "lag ($bus bus): $rate rows/s for ${BENCH_LAG_SECONDS}s from $pos (logs in $WORK/$name)"
    python3 "$LIB" lag "${PORT[src]}" "${PORT[$name]}" "$table" "$rate" "$BENCH_LAG_SECONDS" "$BENCH_LAG_TXNS" "$out" \
        "source_mariadbd=${PID[src]},target_mariadbd=${PID[$name]},$pids" || say "lag ($bus bus): measurement failed"
    [[ -f $out ]] && python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); r["rate_basis"]=sys.argv[2]; json.dump(r, open(sys.argv[1], "w"))' "$out" "$basis"
    if [[ $bus == kafka ]]; then
        stop_pid "$AGENT_PID" "fleetsync agent"
        stop_pid "$COORD_PID" "fleetsync coordinator"
        show_log "$WORK/$name/agent.log" "fleetsync agent"
        show_log "$WORK/$name/coordinator.log" "fleetsync coordinator"
    else
        stop_pid "$FS_PID" "fleetsync"
        show_log "$WORK/$name/fleetsync.log" "fleetsync"
    fi
    stop_instance "$name"
    rm -rf "$WORK/$name/data"
}

# run_workload W: the source from the starting-data copy, W's backlog on it, then every run
# against that backlog (native 0 and 4, fleetsync per bus; Debezium and lag with `mixed`); its
# JSON pieces go to $RUN = $WORK/runs/W, its report line to stdout.
run_workload() {
W=$1
RUN="$WORK/runs/$W"
mkdir -p "$RUN"
new_copy src srcbase
start_instance src 1
say "=== workload $W ==="

# --- 2. the backlog, with no replica connected ----------------------------------------------
say "generating workload $W"
python3 "$LIB" gen "$BENCH_ROWS" "$WORK/workload.sql" "$RUN/counts.json" "$W"
read -r START_FILE START_POS < <(sql src "SHOW MASTER STATUS" | cut -f1,2)
START_GTID="$(sql src "SELECT BINLOG_GTID_POS('$START_FILE', $START_POS)")"
if [[ $BENCH_DEBEZIUM == 1 && $W == mixed ]]; then
    prime_debezium
    read -r f p < <(sql src "SHOW MASTER STATUS" | cut -f1,2)
    [[ $f:$p == "$START_FILE:$START_POS" ]] || { say "the source's binlog moved while priming Debezium ($f:$p)"; exit 1; }
fi
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
ROWS="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["row_events"])' "$RUN/counts.json")"
say "backlog: $ROWS row events (handler delta $((H1 - H0))), $START_FILE:$START_POS .. $END_FILE:$END_POS, $BINLOG_BYTES bytes, loaded in $(awk -v a="$T0" -v b="$T1" 'BEGIN{printf "%.1f", b-a}') s"
if [[ $((H1 - H0)) != "$ROWS" ]]; then
    say "WARNING: Handler_write+update+delete delta $((H1 - H0)) differs from the generator's $ROWS"
fi
python3 - "$RUN/meta.json" <<EOF
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
    python3 "$LIB" wait-native "${PORT[$name]}" "$END_FILE" "$END_POS" "$threads" "$BENCH_TIMEOUT" "$RUN/native-$threads.json" \
        "source_mariadbd=${PID[src]},replica_mariadbd=${PID[$name]}"
    python3 "$LIB" verify "${PORT[src]}" "${PORT[$name]}" "$RUN/verify-native-$threads.json"
    stop_instance "$name"
    keep_logs "$name"
    rm -rf "$WORK/$name/data"
done

# --- 3b. fleetsync ---------------------------------------------------------------------------
POSITION="$START_FILE:$START_POS"
[[ -n "$START_GTID" ]] && POSITION="$POSITION@$START_GTID"

if [[ $BENCH_BUS == embedded || $BENCH_BUS == both ]]; then
prepare_target fs 20 "$POSITION"
write_config fs
python3 "$LIB" wait-idle "$BENCH_IDLE_WAIT"
python3 "$LIB" baseline "${PORT[fs]}" "source_mariadbd=${PID[src]},target_mariadbd=${PID[fs]}" "$WORK/fs/baseline.json"
say "fleetsync from $POSITION: catching up (log: $WORK/fs/fleetsync.log)"
FS_START=$(date +%s.%N)
NO_COLOR=1 "$FLEETSYNC" run --config "$WORK/fs/fleetsync.toml" >"$WORK/fs/fleetsync.log" 2>&1 &
FS_PID=$!
PIDS+=("$FS_PID")
python3 "$LIB" wait-fleetsync "${PORT[fs]}" "$FS_PID" "$FS_START" "$END_FILE" "$END_POS" "$BENCH_TIMEOUT" "$RUN/fleetsync.json" \
    "source_mariadbd=${PID[src]},target_mariadbd=${PID[fs]}" "$WORK/fs/fleetsync.log" "$WORK/fs/baseline.json"
"$FLEETSYNC" status --config "$WORK/fs/fleetsync.toml" --json >"$WORK/fs/status.json" 2>>"$WORK/fs/fleetsync.log" || true
kill -TERM "$FS_PID" 2>/dev/null || true
FS_RC=0
wait "$FS_PID" || FS_RC=$?
forget_pid "$FS_PID"
say "fleetsync exited with status $FS_RC; status: $(tr -d '\n' <"$WORK/fs/status.json")"
say "fleetsync log (warnings/errors and last lines):"
{ grep -E 'WARN|ERROR' "$WORK/fs/fleetsync.log" | head -n 40 || true; echo ...; tail -n 15 "$WORK/fs/fleetsync.log"; } | sed 's/^/  | /' >&2
python3 "$LIB" verify "${PORT[src]}" "${PORT[fs]}" "$RUN/verify-fleetsync.json"
stop_instance fs
keep_logs fs
rm -rf "$WORK/fs/data"
fi

# --- 3c. fleetsync over Kafka (Apache Kafka, the one broker) ------------------------------------
if [[ $BENCH_BUS == kafka || $BENCH_BUS == both ]]; then
prepare_target fsk 21 "$POSITION"
write_config fsk "$BOOTSTRAP"
python3 "$LIB" wait-idle "$BENCH_IDLE_WAIT"
python3 "$LIB" baseline "${PORT[fsk]}" "source_mariadbd=${PID[src]},target_mariadbd=${PID[fsk]},broker=$BROKER_PID" "$WORK/fsk/baseline.json"
say "fleetsync agent + coordinator (Kafka) from $POSITION: catching up (logs: $WORK/fsk/{agent,coordinator,broker}.log)"
FSK_START=$(date +%s.%N)
start_kafka_fleetsync fsk "$POSITION"
python3 "$LIB" wait-fleetsync "${PORT[fsk]}" "fleetsync_agent=$AGENT_PID,fleetsync_coordinator=$COORD_PID,broker=$BROKER_PID" "$FSK_START" \
    "$END_FILE" "$END_POS" "$BENCH_TIMEOUT" "$RUN/fleetsync-kafka.json" \
    "source_mariadbd=${PID[src]},target_mariadbd=${PID[fsk]}" \
    "agent=$WORK/fsk/agent.log,coordinator=$WORK/fsk/coordinator.log" "$WORK/fsk/baseline.json"
"$FLEETSYNC" status --config "$WORK/fsk/fleetsync.toml" --json >"$WORK/fsk/status.json" 2>>"$WORK/fsk/coordinator.log" || true
say "status: $(tr -d '\n' <"$WORK/fsk/status.json")"
stop_pid "$AGENT_PID" "fleetsync agent"
stop_pid "$COORD_PID" "fleetsync coordinator"
show_log "$WORK/fsk/agent.log" "fleetsync agent"
show_log "$WORK/fsk/coordinator.log" "fleetsync coordinator"
python3 "$LIB" verify "${PORT[src]}" "${PORT[fsk]}" "$RUN/verify-fleetsync-kafka.json"
stop_instance fsk
keep_logs fsk
rm -rf "$WORK/fsk/data"
# The broker's disk: this run's topic is read and verified, the next workloads don't need it.
python3 "$LIB" delete-topics "$BOOTSTRAP" "fsk-$W.src" || say "could not delete topic fsk-$W.src (disk use only)"
fi

# --- 3d. Debezium side by side (BENCH_DEBEZIUM=1) ----------------------------------------------
# Capture only: the same backlog from the same source into the same broker, each into topics
# of its own; the clock starts when the process is spawned and stops when the topics hold one
# message per row event (end offsets polled every 50 ms).
if [[ $BENCH_DEBEZIUM == 1 && $W == mixed ]]; then
DBZ_TOPICS="cap.bench.accounts,cap.bench.orders,cap.bench.events"
restore_debezium dbzcap
debezium_source "$WORK/dbzcap.properties" cap
python3 "$LIB" wait-idle "$BENCH_IDLE_WAIT"
say "Debezium MariaDB connector (Kafka Connect standalone, schemas.enable=$BENCH_DEBEZIUM_SCHEMAS): capturing the backlog"
T_START=$(date +%s.%N)
start_connect dbzcap "$BENCH_DEBEZIUM_SCHEMAS" "$WORK/dbzcap.properties"
python3 "$LIB" wait-topics "$BOOTSTRAP" "$DBZ_TOPICS" "$ROWS" "kafka_connect=$CONNECT_PID" "$T_START" \
    "$BENCH_TIMEOUT" "$RUN/debezium-capture.json" "source_mariadbd=${PID[src]},broker=$BROKER_PID"
stop_pid "$CONNECT_PID" "Kafka Connect (Debezium capture)"
show_log "$WORK/dbzcap/connect.log" "Kafka Connect (Debezium capture)"

mkdir -p "$WORK/fscap/state"
# Only the agent runs: a sync to a target that nobody applies to (the agent only reads `src`).
PORT[fscap]=${PORT[src]}
write_config fscap "$BOOTSTRAP"
python3 "$LIB" wait-idle "$BENCH_IDLE_WAIT"
say "fleetsync agent: capturing the backlog into fscap-$W.src"
T_START=$(date +%s.%N)
NO_COLOR=1 "$FLEETSYNC" agent --config "$WORK/fscap/fleetsync.toml" --server src --start-at "$POSITION" \
    >"$WORK/fscap/agent.log" 2>&1 &
AGENT_PID=$!
PIDS+=("$AGENT_PID")
python3 "$LIB" wait-topics "$BOOTSTRAP" "fscap-$W.src" "$ROWS" "fleetsync_agent=$AGENT_PID" "$T_START" \
    "$BENCH_TIMEOUT" "$RUN/fleetsync-capture.json" "source_mariadbd=${PID[src]},broker=$BROKER_PID"
stop_pid "$AGENT_PID" "fleetsync agent (capture)"
show_log "$WORK/fscap/agent.log" "fleetsync agent (capture)"

# End to end: Debezium source + JDBC sink in one Connect worker (schemas on: the sink needs
# them) into a fresh target from the copy; done when the sink's consumer group has committed
# every message of the three topics (it commits after writing). Compared with the Kafka bus
# run above (fleetsync agent + coordinator, same broker).
prepare_target dbze2e 40 "$POSITION"
restore_debezium dbze2e
debezium_source "$WORK/dbze2e-source.properties" e2e
cat >"$WORK/dbze2e-sink.properties" <<EOF
name=dbzsink
connector.class=io.debezium.connector.jdbc.JdbcSinkConnector
tasks.max=1
topics=e2e.bench.accounts,e2e.bench.orders,e2e.bench.events
connection.url=jdbc:mariadb://127.0.0.1:${PORT[dbze2e]}/bench
connection.username=root
connection.password=
insert.mode=upsert
delete.enabled=true
primary.key.mode=record_key
schema.evolution=none
collection.name.format=\${source.table}
use.time.zone=UTC
EOF
python3 "$LIB" wait-idle "$BENCH_IDLE_WAIT"
say "Debezium source + JDBC sink (one Connect worker) into dbze2e: catching up"
T_START=$(date +%s.%N)
start_connect dbze2e true "$WORK/dbze2e-source.properties" "$WORK/dbze2e-sink.properties"
python3 "$LIB" wait-topics "$BOOTSTRAP" "e2e.bench.accounts,e2e.bench.orders,e2e.bench.events" "$ROWS" \
    "kafka_connect=$CONNECT_PID" "$T_START" "$BENCH_TIMEOUT" "$RUN/debezium-e2e.json" \
    "source_mariadbd=${PID[src]},target_mariadbd=${PID[dbze2e]},broker=$BROKER_PID" connect-dbzsink
stop_pid "$CONNECT_PID" "Kafka Connect (Debezium end to end)"
show_log "$WORK/dbze2e/connect.log" "Kafka Connect (Debezium end to end)"
python3 "$LIB" verify "${PORT[src]}" "${PORT[dbze2e]}" "$RUN/verify-debezium-e2e.json"
stop_instance dbze2e
rm -rf "$WORK/dbze2e/data"
fi

# --- 3e. steady-state lag (BENCH_LAG=1, lag.sh) ------------------------------------------------
if [[ $BENCH_LAG == 1 && $W == mixed ]]; then
    LAG_SPECS=()
    for bus in embedded kafka; do
        [[ $BENCH_BUS == "$bus" || $BENCH_BUS == both ]] || continue
        lag_phase "$bus"
        LAG_SPECS+=("$bus=$RUN/lag-$bus.json")
    done
    python3 "$LIB" lag-report "$RUN/lag.json" "${LAG_SPECS[@]}"
fi

python3 "$LIB" report "$RUN" "$RUN/result.json" "$W"
stop_instance src
rm -rf "$WORK/src/data" "$WORK/workload.sql"
}

for W in $WORKLOADS; do
    run_workload "$W"
done

# --- 4. report -----------------------------------------------------------------------------
mkdir -p "$ROOT/target/bench"
OUT="$ROOT/target/bench/catchup-$(date +%Y%m%d-%H%M%S).json"
RESULTS=()
for W in $WORKLOADS; do RESULTS+=("$WORK/runs/$W/result.json"); done
python3 "$LIB" matrix "$OUT" "${RESULTS[@]}"
say "result written to $OUT"
if [[ "$(python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["ok"]))' "$OUT")" != 1 ]]; then
    say "FAILED: a run did not finish or did not verify (see the JSON)"
    exit 1
fi
SUCCESS=1
