# Shared by tests/bench/backup.sh and tests/bench/backup_s3.sh (sourced, not run): tools,
# the fleetsync binary, the working directory and its clean-up, the two private MariaDB
# instances (src with a binlog, dst without), the data, timing and the restore check.
#
# The sourcing script sets BENCH_NAME (log tag) and DEFAULT_SCALE, then calls bench_setup
# (tools, binary, work dir, instances) and generate_data; it may add pids to PIDS (stopped on
# exit, TERM then KILL after 30 s) and names to CLEAN_DIRS (removed on exit unless BENCH_KEEP=1).

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LIB="$ROOT/tests/bench/benchlib.py"
SCALE="${BENCH_SCALE:-${DEFAULT_SCALE:-1.0}}"
THREADS="${BENCH_THREADS:-4}"
IDLE_WAIT="${BENCH_IDLE_WAIT:-120}"
say() { echo "[${BENCH_NAME:-backup-bench} $(date +%H:%M:%S)] $*" >&2; }

PIDS=()
CLEAN_DIRS=()
SUCCESS=0
cleanup() {
    local rc=$?
    set +e
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    done
    if [[ -z "${WORK:-}" ]]; then exit $rc; fi
    if [[ "${BENCH_KEEP:-0}" == 1 ]]; then say "kept $WORK"
    elif [[ $SUCCESS == 1 && $OWN_WORK == 1 ]]; then rm -rf "$WORK"
    else rm -rf "$WORK"/*/data "$WORK"/out "${CLEAN_DIRS[@]}"; say "logs kept in $WORK"; fi
    exit $rc
}

bench_setup() {
    for tool in mydumper myloader mariadb-dump zstd; do
        if ! command -v "$tool" >/dev/null; then
            say "installing $tool"
            case $tool in
                mydumper | myloader) apt-get install -y mydumper >&2 ;;
                zstd) apt-get install -y zstd >&2 ;;
                *) apt-get install -y mariadb-client >&2 ;;
            esac
        fi
    done

    if [[ -n "${FLEETSYNC_BIN:-}" ]]; then
        FLEETSYNC="$FLEETSYNC_BIN"
    else
        say "building fleetsync (cargo build --release -p fleetsync)"
        (cd "$ROOT" && cargo build --release -p fleetsync >&2)
        FLEETSYNC="$ROOT/target/release/fleetsync"
    fi
    if [[ -n "${BENCH_DIR:-}" ]]; then
        mkdir -p "$BENCH_DIR"; WORK="$(cd "$BENCH_DIR" && pwd)"; OWN_WORK=0
    else
        WORK="$(mktemp -d "/tmp/fleetsync-${BENCH_NAME:-backup-bench}.XXXXXX")"; OWN_WORK=1
    fi
    cp "$FLEETSYNC" "$WORK/fleetsync"
    FLEETSYNC="$WORK/fleetsync"
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    MARIADBD="$(command -v mariadbd || echo /usr/sbin/mariadbd)"
    USER_ARGS=()
    [[ $(id -u) == 0 ]] && USER_ARGS=(--user=root)
    COMMON_ARGS=(
        --bind-address=127.0.0.1 --skip-name-resolve --character-set-server=utf8mb4
        --innodb-buffer-pool-size=2G --innodb-log-file-size=512M
        --innodb-flush-log-at-trx-commit=2 --sync-binlog=0 --max-allowed-packet=64M
    )
    declare -gA PORT PID_OF
    start_instance src 1 --log-bin="$WORK/src/data/binlog" --binlog-format=ROW --binlog-row-image=FULL \
        --binlog-row-metadata=FULL
    start_instance dst 2 --skip-log-bin
    MARIADB_VERSION="$(sql src "SELECT VERSION()")"
    mkdir -p "$WORK/out"
}

start_instance() {  # start_instance NAME ID EXTRA...
    local name=$1 id=$2 dir="$WORK/$1"; shift 2
    mkdir -p "$dir/tmp"
    mariadb-install-db --no-defaults "${USER_ARGS[@]}" --datadir="$dir/data" \
        --auth-root-authentication-method=normal >"$dir/install.log" 2>&1
    PORT[$name]="$(python3 "$LIB" freeport)"
    "$MARIADBD" --no-defaults "${USER_ARGS[@]}" --datadir="$dir/data" --port="${PORT[$name]}" \
        --socket="$dir/mysql.sock" --pid-file="$dir/mysqld.pid" --log-error="$dir/error.log" \
        --tmpdir="$dir/tmp" --server-id="$id" "${COMMON_ARGS[@]}" "$@" >>"$dir/stdout.log" 2>&1 &
    PIDS+=("$!")
    PID_OF[$name]=$!
    for _ in $(seq 1 600); do
        mariadb-admin --no-defaults -h127.0.0.1 -P"${PORT[$name]}" -uroot ping >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    tail -n 30 "$dir/error.log" >&2; return 1
}
sql() { local name=$1; shift; mariadb --no-defaults -h127.0.0.1 -P"${PORT[$name]}" -uroot -N -B -e "$*"; }

# --- data --------------------------------------------------------------------------------
TABLES="bench.orders bench.events bench.users bench.log"
table_sums() {  # table_sums NAME: "rows:checksum" of each table, in TABLES' order
    local t out=""
    for t in $TABLES; do
        out+="$(sql "$1" "SELECT COUNT(*) FROM $t"):$(sql "$1" "CHECKSUM TABLE $t" | cut -f2) "
    done
    echo "$out"
}
generate_data() {
    n() { python3 -c "print(int($1 * $SCALE))"; }
    ORDERS=$(n 4000000); EVENTS=$(n 3000000); USERS=$(n 1500000); LOGS=$(n 1000000)
    say "work dir $WORK; generating data ($ORDERS orders, $EVENTS events, $USERS users, $LOGS log rows)"
    local t0; t0=$(date +%s.%N)
    sql src "
CREATE DATABASE bench;
USE bench;
CREATE TABLE bench.orders (
  id BIGINT UNSIGNED NOT NULL PRIMARY KEY, customer INT NOT NULL, status ENUM('new','paid','shipped','returned') NOT NULL,
  amount DECIMAL(12,2) NOT NULL, tax FLOAT, created DATETIME(6) NOT NULL, updated TIMESTAMP NULL,
  note VARCHAR(200), tags SET('gift','express','fragile','bulk'), KEY (customer)
) ENGINE=InnoDB;
CREATE TABLE bench.events (
  device INT NOT NULL, ts DATETIME(3) NOT NULL, value DOUBLE, payload VARBINARY(64), kind CHAR(8),
  PRIMARY KEY (device, ts)
) ENGINE=InnoDB;
CREATE TABLE bench.users (
  email VARCHAR(120) NOT NULL PRIMARY KEY, name VARCHAR(80) NOT NULL, born DATE, bio TEXT,
  score SMALLINT, active BIT(1)
) ENGINE=InnoDB;
CREATE TABLE bench.log (at TIMESTAMP(3) NULL, level TINYINT UNSIGNED, msg TEXT) ENGINE=InnoDB;
SET SESSION sql_log_bin = 1;
INSERT INTO bench.orders SELECT seq, seq % 250007, 1 + seq % 4, (seq % 100000) / 7, (seq % 1000) / 13,
  TIMESTAMPADD(SECOND, seq * 7, '2020-01-01 00:00:00') + INTERVAL (seq % 1000000) MICROSECOND,
  IF(seq % 5 = 0, NULL, FROM_UNIXTIME(1600000000 + seq)),
  CONCAT('order ', seq, ' for customer ', seq % 250007, IF(seq % 3 = 0, CONCAT(' note ', MD5(seq)), '')),
  seq % 16 FROM seq_1_to_$ORDERS;
INSERT INTO bench.events SELECT seq % 5000, TIMESTAMPADD(SECOND, seq DIV 5000 * 61, '2023-01-01') + INTERVAL (seq % 997) * 1000 MICROSECOND,
  SIN(seq) * 1000, UNHEX(SUBSTR(SHA2(seq, 256), 1, 2 * (8 + seq % 24))), ELT(1 + seq % 3, 'temp', 'humid', 'press')
  FROM seq_1_to_$EVENTS;
INSERT INTO bench.users SELECT CONCAT('user', seq, '@example', seq % 97, '.com'), CONCAT('Name ', seq, ' Ünïcødé'),
  '1950-01-01' + INTERVAL (seq % 20000) DAY,
  IF(seq % 4 = 0, NULL, CONCAT('Bio of user ', seq, ': ', REPEAT(SUBSTR(MD5(seq), 1, 10), 1 + seq % 8))),
  CAST(seq % 30000 AS SIGNED) - 15000, seq % 2 FROM seq_1_to_$USERS;
INSERT INTO bench.log SELECT FROM_UNIXTIME(1700000000 + seq / 10), seq % 6,
  CONCAT('request ', seq, ' served in ', seq % 977, ' ms from host-', seq % 31, ' path /api/v1/items/', seq % 10007)
  FROM seq_1_to_$LOGS;
"
    GEN_SECONDS=$(python3 -c "import time;print(round(time.time()-$t0,1))")
    TOTAL_ROWS=$((ORDERS + EVENTS + USERS + LOGS))
    DATA_BYTES="$(sql src "SELECT SUM(DATA_LENGTH + INDEX_LENGTH) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'bench'")"
    SRC_SUMS="$(table_sums src)"
    say "generated $TOTAL_ROWS rows in ${GEN_SECONDS}s (InnoDB size $DATA_BYTES bytes)"
}

# --- timing and checks -----------------------------------------------------------------------
busy_now() { python3 -c "import sys;sys.path.insert(0,'$ROOT/tests/bench');import benchlib;print(benchlib.machine_busy_seconds())"; }
timed() {  # timed NAME CMD...: runs CMD, appends "NAME seconds other_cpu_seconds" to $WORK/results.txt
    local name=$1; shift
    python3 "$LIB" wait-idle "$IDLE_WAIT" 2>/dev/null || true
    sync
    local b0 t0 t1 b1
    b0=$(busy_now)
    t0=$(date +%s.%N)
    "$@"
    t1=$(date +%s.%N)
    b1=$(busy_now)
    local secs; secs=$(python3 -c "print(round($t1 - $t0, 2))")
    echo "$name $secs $(python3 -c "print(round($b1 - $b0, 1))")" >>"$WORK/results.txt"
    say "$name: ${secs}s"
}
reset_dst() { sql dst "DROP DATABASE IF EXISTS bench"; }
check_dst() {  # check_dst NAME: records in $WORK/exact.txt whether dst's tables equal the source's
    local sums; sums="$(table_sums dst)"
    if [[ "$sums" == "$SRC_SUMS" ]]; then echo "$1 true" >>"$WORK/exact.txt"; return 0; fi
    say "$1: restored data differs from the source (rows:CHECKSUM TABLE of $TABLES: $sums vs $SRC_SUMS)"
    echo "$1 false" >>"$WORK/exact.txt"
    # fleetsync must restore exactly; other tools' differences are reported, not fatal.
    [[ $1 != fleetsync* ]]
}
