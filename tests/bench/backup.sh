#!/usr/bin/env bash
# Backup/restore benchmark: fleetsync backup/restore vs mydumper/myloader vs mariadb-dump and
# the mariadb client, on one source with >= 1 GB of data (several tables, millions of rows,
# mixed types), all with the same thread count.
#
# Usage:   tests/bench/backup.sh            (builds fleetsync --release itself)
# Env:     BENCH_SCALE    rows multiplier (default 1.0: ~9.5M rows, ~1.3 GB of SQL text)
#          BENCH_THREADS  threads for every tool (default 4)
#          BENCH_DIR      working directory (default: a new mktemp -d, removed on success)
#          BENCH_IDLE_WAIT  before each timed run, wait up to this many seconds for the
#                         machine to be idle (default 120; 0: don't wait)
#          BENCH_KEEP=1   keep BENCH_DIR
#          FLEETSYNC_BIN  use this fleetsync binary instead of building target/release/fleetsync
# Output:  one JSON object on stdout (also target/bench/backup-<date>.json); progress on stderr.
# Method:  the source (binlog on, as fleetsync needs) gets the data by INSERT ... SELECT from
#          MariaDB's sequence engine. Each tool backs it up into its own directory:
#          fleetsync (zstd level 3, chunk_rows 100000), mydumper -c (gzip) --rows 100000,
#          mariadb-dump --single-transaction (plain SQL, uncompressed: its fastest form). Each
#          restore goes into the same empty target database on a second instance without a
#          binlog (so no tool pays for binlogging): fleetsync backup restore (which verifies
#          every file first), myloader, `mariadb < dump.sql`. Restores are checked by row count
#          and a CHECKSUM TABLE comparison with the source. Figures are noisy on a shared
#          machine: the "other_cpu_seconds" of each run shows CPU used by other processes.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LIB="$ROOT/tests/bench/benchlib.py"
SCALE="${BENCH_SCALE:-1.0}"
THREADS="${BENCH_THREADS:-4}"
IDLE_WAIT="${BENCH_IDLE_WAIT:-120}"
say() { echo "[backup-bench $(date +%H:%M:%S)] $*" >&2; }

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
    WORK="$(mktemp -d /tmp/fleetsync-backup-bench.XXXXXX)"; OWN_WORK=1
fi
cp "$FLEETSYNC" "$WORK/fleetsync"
FLEETSYNC="$WORK/fleetsync"

PIDS=()
SUCCESS=0
cleanup() {
    local rc=$?
    set +e
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    done
    if [[ "${BENCH_KEEP:-0}" == 1 ]]; then say "kept $WORK"
    elif [[ $SUCCESS == 1 && $OWN_WORK == 1 ]]; then rm -rf "$WORK"
    else rm -rf "$WORK"/*/data "$WORK"/out; say "logs kept in $WORK"; fi
    exit $rc
}
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
declare -A PORT
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
    for _ in $(seq 1 600); do
        mariadb-admin --no-defaults -h127.0.0.1 -P"${PORT[$name]}" -uroot ping >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    tail -n 30 "$dir/error.log" >&2; return 1
}
sql() { local name=$1; shift; mariadb --no-defaults -h127.0.0.1 -P"${PORT[$name]}" -uroot -N -B -e "$*"; }

start_instance src 1 --log-bin="$WORK/src/data/binlog" --binlog-format=ROW --binlog-row-image=FULL \
    --binlog-row-metadata=FULL
start_instance dst 2 --skip-log-bin
MARIADB_VERSION="$(sql src "SELECT VERSION()")"

# --- data --------------------------------------------------------------------------------
n() { python3 -c "print(int($1 * $SCALE))"; }
ORDERS=$(n 4000000); EVENTS=$(n 3000000); USERS=$(n 1500000); LOGS=$(n 1000000)
say "work dir $WORK; generating data ($ORDERS orders, $EVENTS events, $USERS users, $LOGS log rows)"
T0=$(date +%s.%N)
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
GEN_SECONDS=$(python3 -c "import time;print(round(time.time()-$T0,1))")
TOTAL_ROWS=$((ORDERS + EVENTS + USERS + LOGS))
DATA_BYTES="$(sql src "SELECT SUM(DATA_LENGTH + INDEX_LENGTH) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'bench'")"
SRC_SUMS="$(sql src "CHECKSUM TABLE bench.orders, bench.events, bench.users, bench.log" | cut -f2 | tr '\n' ' ')"
say "generated $TOTAL_ROWS rows in ${GEN_SECONDS}s (InnoDB size $DATA_BYTES bytes)"

cat >"$WORK/fleetsync.toml" <<EOF
state_dir = "$WORK/state"
[[servers]]
name = "src"
url = "mysql://root@127.0.0.1:${PORT[src]}"
[[servers]]
name = "dst"
url = "mysql://root@127.0.0.1:${PORT[dst]}"
[backup]
dir = "$WORK/out/fleetsync"
compression = "zstd"
threads = $THREADS
chunk_rows = 100000
EOF
mkdir -p "$WORK/out"
RESULTS="$WORK/results.txt"
: >"$RESULTS"
timed() {  # timed NAME CMD...: runs CMD, appends "NAME seconds other_cpu_seconds" to RESULTS
    local name=$1; shift
    python3 "$LIB" wait-idle "$IDLE_WAIT" 2>/dev/null || true
    sync
    local b0 t0 t1 b1
    b0=$(python3 -c "import sys;sys.path.insert(0,'$ROOT/tests/bench');import benchlib;print(benchlib.machine_busy_seconds())")
    t0=$(date +%s.%N)
    "$@"
    t1=$(date +%s.%N)
    b1=$(python3 -c "import sys;sys.path.insert(0,'$ROOT/tests/bench');import benchlib;print(benchlib.machine_busy_seconds())")
    local secs; secs=$(python3 -c "print(round($t1 - $t0, 2))")
    echo "$name $secs $(python3 -c "print(round($b1 - $b0, 1))")" >>"$RESULTS"
    say "$name: ${secs}s"
}
reset_dst() { sql dst "DROP DATABASE IF EXISTS bench"; }
EXACT="$WORK/exact.txt"
: >"$EXACT"
check_dst() {  # check_dst NAME: records whether the restored tables equal the source's
    local sums; sums="$(sql dst "CHECKSUM TABLE bench.orders, bench.events, bench.users, bench.log" | cut -f2 | tr '\n' ' ')"
    if [[ "$sums" == "$SRC_SUMS" ]]; then echo "$1 true" >>"$EXACT"; return 0; fi
    say "$1: restored data differs from the source (CHECKSUM TABLE orders/events/users/log: $sums vs $SRC_SUMS)"
    echo "$1 false" >>"$EXACT"
    # fleetsync must restore exactly; other tools' differences are reported, not fatal.
    [[ $1 != fleetsync ]]
}

# --- backups -------------------------------------------------------------------------------
fs_backup() { "$FLEETSYNC" backup create --config "$WORK/fleetsync.toml" --server src --include 'bench\..*' --json >"$WORK/fs-create.json"; }
timed fleetsync_backup fs_backup
FS_ID="$(python3 -c "import json;print(json.load(open('$WORK/fs-create.json'))['id'])")"
my_backup() { mydumper --host 127.0.0.1 --port "${PORT[src]}" --user root -t "$THREADS" -c --rows 100000 \
    -B bench -o "$WORK/out/mydumper" >"$WORK/mydumper.log" 2>&1; }
timed mydumper_backup my_backup
md_backup() { mariadb-dump --no-defaults -h127.0.0.1 -P"${PORT[src]}" -uroot --single-transaction \
    --databases bench >"$WORK/out/mariadb-dump.sql"; }
timed mariadb_dump_backup md_backup

# --- restores ------------------------------------------------------------------------------
reset_dst
fs_restore() { "$FLEETSYNC" backup restore --config "$WORK/fleetsync.toml" "$FS_ID" --to-server dst --yes >"$WORK/fs-restore.log"; }
timed fleetsync_restore fs_restore
check_dst fleetsync
reset_dst
my_restore() { myloader --host 127.0.0.1 --port "${PORT[dst]}" --user root -t "$THREADS" \
    -d "$WORK/out/mydumper" >"$WORK/myloader.log" 2>&1; }
timed myloader_restore my_restore
check_dst myloader
reset_dst
cli_restore() { mariadb --no-defaults -h127.0.0.1 -P"${PORT[dst]}" -uroot <"$WORK/out/mariadb-dump.sql"; }
timed mariadb_client_restore cli_restore
check_dst mariadb-client

size() { du -sb "$1" | cut -f1; }
SIZES="fleetsync=$(size "$WORK/out/fleetsync/$FS_ID") mydumper=$(size "$WORK/out/mydumper") mariadb_dump=$(size "$WORK/out/mariadb-dump.sql")"
mkdir -p "$ROOT/target/bench"
OUT="$ROOT/target/bench/backup-$(date +%Y%m%d-%H%M%S).json"
python3 - "$RESULTS" "$TOTAL_ROWS" "$THREADS" "$MARIADB_VERSION" "$DATA_BYTES" "$SIZES" "$GEN_SECONDS" "$EXACT" >"$OUT" <<'EOF'
import json, sys
res, rows, threads, version, data_bytes, sizes, gen, exact = sys.argv[1:]
rows = int(rows)
runs = {}
for line in open(res):
    name, secs, other = line.split()
    runs[name] = {"seconds": float(secs), "rows_per_s": round(rows / float(secs)), "machine_busy_cpu_seconds": float(other)}
size = {k: int(v) for k, v in (s.split("=") for s in sizes.split())}
def ratio(a, b):
    return round(runs[b]["seconds"] / runs[a]["seconds"], 2)
out = {
    "bench": "backup", "rows": rows, "threads": threads, "mariadb": version,
    "innodb_bytes": int(data_bytes), "generate_seconds": float(gen), "runs": runs,
    "stored_bytes": size,
    "restore_exact": {k: v == "true" for k, v in (l.split() for l in open(exact))},
    "ratios": {
        "backup_vs_mydumper": ratio("fleetsync_backup", "mydumper_backup"),
        "backup_vs_mariadb_dump": ratio("fleetsync_backup", "mariadb_dump_backup"),
        "restore_vs_myloader": ratio("fleetsync_restore", "myloader_restore"),
        "restore_vs_mariadb_client": ratio("fleetsync_restore", "mariadb_client_restore"),
        "size_vs_mydumper": round(size["fleetsync"] / size["mydumper"], 3),
    },
    "notes": "ratios > 1 mean fleetsync is faster (speed) or smaller (size: < 1); machine_busy_cpu_seconds counts every process on the machine during the run, ours included",
}
print(json.dumps(out, indent=2))
EOF
cat "$OUT"
SUCCESS=1
