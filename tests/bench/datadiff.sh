#!/usr/bin/env bash
# Data diff benchmark (not a test): `fleetsync diff data` against pt-table-checksum on the same
# 5M-row table in the same run.
#
#   tests/bench/datadiff.sh                      # 5,000,000 rows, 300 rows altered
#   BENCH_ROWS=500000 tests/bench/datadiff.sh    # quick run
#
# Setup: server A (binlog on) is loaded with BENCH_ROWS rows (INSERT ... SELECT from the
# sequence engine, not binlogged), stopped, and its data dir copied to server B; both start,
# B replicates from A (GTID, native replication: pt-table-checksum needs it, it checksums on
# the master and the replica re-runs its statement-based checksum queries). Then
# BENCH_CHANGED rows are altered on B only (a third updated, a third deleted, a third
# inserted, with sql_log_bin=0), both buffer pools are warmed (every row read once) and, in
# this order:
#   1. fleetsync diff data A/bench B/bench --json   (both sides concurrently, snapshots)
#   2. pt-table-checksum on A (replica B found through a DSN table), its DIFFS = chunks
#   3. pt-table-sync --print --replicate on B: the rows pt-table-checksum's chunks contain
#      that differ (statements it would run), to compare rows found.
# Prints one JSON object: seconds of each, the ratio, chunks and rows each found.
# Must run as root (pt-table-checksum sets binlog_format for its session: SUPER).
# Never touches a server on 3306: private data dirs under BENCH_DIR, ports 33911/33912.
set -euo pipefail

ROWS=${BENCH_ROWS:-5000000}
CHANGED=${BENCH_CHANGED:-300}
DIR=${BENCH_DIR:-/tmp/fleetsync-bench-datadiff}
PA=${BENCH_PORT_A:-33911}
PB=${BENCH_PORT_B:-33912}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${FLEETSYNC_BIN:-$ROOT/target/release/fleetsync}
export PATH=/usr/sbin:$PATH

log() { echo "[$(date +%T)] $*" >&2; }

if ! command -v pt-table-checksum >/dev/null; then
  log "installing percona-toolkit"
  apt-get install -y percona-toolkit >&2
fi
if [ ! -x "$BIN" ]; then
  log "building $BIN"
  (cd "$ROOT" && cargo build --release -p fleetsync >&2)
fi

start() { # NAME PORT ID
  mariadbd --no-defaults --user=root --datadir="$DIR/$1" --port="$2" --socket="$DIR/$1.sock" \
    --bind-address=127.0.0.1 --server-id="$3" --log-bin="$DIR/$1/binlog" --binlog-format=ROW \
    --innodb-buffer-pool-size=1G --innodb-flush-log-at-trx-commit=2 --character-set-server=utf8mb4 \
    --skip-name-resolve --report-host=127.0.0.1 --report-port="$2" >"$DIR/$1.log" 2>&1 &
  for _ in $(seq 1 60); do
    mariadb-admin --no-defaults -S "$DIR/$1.sock" -uroot ping >/dev/null 2>&1 && return 0
    sleep 1
  done
  log "server $1 did not start"; tail "$DIR/$1.log" >&2; exit 1
}
stop() { mariadb-admin --no-defaults -S "$DIR/$1.sock" -uroot shutdown >/dev/null 2>&1 || true; }
sql() { local s=$1; shift; mariadb --no-defaults -S "$DIR/$s.sock" -uroot -N -B "$@"; }
cleanup() { stop a; stop b; }
trap cleanup EXIT

cleanup
rm -rf "$DIR" && mkdir -p "$DIR"
mariadb-install-db --no-defaults --datadir="$DIR/a" --user=root --auth-root-authentication-method=normal >/dev/null
start a "$PA" 1
log "loading $ROWS rows"
t0=$(date +%s.%N)
sql a -e "SET sql_log_bin = 0; CREATE DATABASE bench;
CREATE TABLE bench.t (id INT NOT NULL PRIMARY KEY, a INT NOT NULL, b VARCHAR(40) NOT NULL,
  c DATETIME NOT NULL, d DECIMAL(12,2) NOT NULL, e INT NULL, KEY k_a (a)) ENGINE=InnoDB;
INSERT INTO bench.t SELECT seq, seq * 7 % 100000, CONCAT('name-', seq, '-', LEFT(MD5(seq), 12)),
  '2020-01-01' + INTERVAL seq SECOND, seq / 100, IF(seq % 10 = 0, NULL, seq % 977) FROM bench.seq_1_to_$ROWS;"
log "loaded in $(echo "$(date +%s.%N) - $t0" | bc) s; copying the data dir"
stop a; sleep 2
cp -a "$DIR/a" "$DIR/b"
rm -f "$DIR"/b/binlog.* "$DIR"/b/*.pid
start a "$PA" 1
start b "$PB" 2
GTID=$(sql a -e "SELECT @@gtid_binlog_pos")
sql b -e "SET GLOBAL gtid_slave_pos = '$GTID'; CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$PA,
  MASTER_USER='root', MASTER_USE_GTID=slave_pos; START SLAVE;"
sql a -e "CREATE DATABASE percona; CREATE TABLE percona.dsns (id INT AUTO_INCREMENT PRIMARY KEY,
  parent_id INT NULL, dsn VARCHAR(255) NOT NULL); INSERT INTO percona.dsns (dsn) VALUES ('h=127.0.0.1,P=$PB,u=root');"

# Alter rows on B only, spread over the key space.
N3=$((CHANGED / 3))
STEP=$((ROWS / (CHANGED + 1)))
log "altering $CHANGED rows on B"
sql b -e "SET sql_log_bin = 0;
UPDATE bench.t SET b = CONCAT(b, '!') WHERE id IN (SELECT seq * $STEP FROM bench.seq_1_to_$N3);
DELETE FROM bench.t WHERE id IN (SELECT seq * $STEP + 1 FROM bench.seq_1_to_$N3);
INSERT INTO bench.t SELECT $ROWS + seq * 1000, 1, 'extra', '2021-01-01', 1, 1 FROM bench.seq_1_to_$N3;"
sql a -e "ANALYZE LOCAL TABLE bench.t" >/dev/null
sql b -e "ANALYZE LOCAL TABLE bench.t" >/dev/null
# Both servers warm before either tool runs: the restarts left the buffer pools loading in
# the background (innodb_buffer_pool_load_at_startup), so wait for that, then read every row
# once; otherwise whichever tool runs first pays for the disk reads.
for s in a b; do
  for _ in $(seq 1 120); do
    sql "$s" -e "SHOW STATUS LIKE 'Innodb_buffer_pool_load_status'" | grep -qiE "completed|not started" && break
    sleep 1
  done
  sql "$s" -e "SELECT COUNT(*), SUM(LENGTH(b)) FROM bench.t" >/dev/null
done
sleep 2

cat >"$DIR/config.toml" <<EOF
[[servers]]
name = "a"
url = "mysql://root@127.0.0.1:$PA"
[[servers]]
name = "b"
url = "mysql://root@127.0.0.1:$PB"
EOF

log "fleetsync diff data"
t0=$(date +%s.%N)
set +e
"$BIN" diff data --config "$DIR/config.toml" a/bench b/bench --json >"$DIR/fleetsync.json" 2>"$DIR/fleetsync.log"
FS_EXIT=$?
set -e
FS_SECS=$(echo "$(date +%s.%N) - $t0" | bc)

log "pt-table-checksum"
t0=$(date +%s.%N)
set +e
pt-table-checksum "h=127.0.0.1,P=$PA,u=root" --databases bench --recursion-method "dsn=D=percona,t=dsns" \
  --no-check-binlog-format >"$DIR/pt.out" 2>"$DIR/pt.err"
PT_EXIT=$?
set -e
PT_SECS=$(echo "$(date +%s.%N) - $t0" | bc)

log "pt-table-sync --print (rows in pt-table-checksum's differing chunks)"
t0=$(date +%s.%N)
pt-table-sync --replicate percona.checksums --sync-to-master "h=127.0.0.1,P=$PB,u=root" \
  --databases bench --print >"$DIR/ptsync.sql" 2>"$DIR/ptsync.err" || true
PTSYNC_SECS=$(echo "$(date +%s.%N) - $t0" | bc)

python3 - "$DIR" "$FS_SECS" "$FS_EXIT" "$PT_SECS" "$PT_EXIT" "$PTSYNC_SECS" "$ROWS" "$CHANGED" <<'EOF'
import json, re, sys
d, fs_secs, fs_exit, pt_secs, pt_exit, ptsync_secs, rows, changed = sys.argv[1:]
fs = json.load(open(f"{d}/fleetsync.json"))
t = fs["tables"][0]
fs_keys = {("S", k["id"]) for k in t["only_in_source"]} | {("T", k["id"]) for k in t["only_in_target"]} | {("D", k["id"]) for k in t["different"]}
pt_out = open(f"{d}/pt.out").read().splitlines()
header = next((l.split() for l in pt_out if l.split()[:1] == ["TS"]), [])
row = next((l.split() for l in pt_out if l.endswith("bench.t")), [])
pt = dict(zip(header, row))
pt_chunks_diff = int(pt["DIFFS"]) if "DIFFS" in pt else None
pt_chunks = int(pt["CHUNKS"]) if "CHUNKS" in pt else None
ids = set()
for line in open(f"{d}/ptsync.sql").read().splitlines():
    if line.startswith(("DELETE", "UPDATE")):
        mm = re.search(r"`id`\s*=\s*'?(\d+)'?", line)
    elif line.startswith(("REPLACE", "INSERT")):
        mm = re.search(r"VALUES\s*\('?(\d+)'?", line)
    else:
        mm = None
    if mm:
        ids.add(int(mm.group(1)))
fs_ids = {k for _, k in fs_keys}
fs_s, pt_s = float(fs_secs), float(pt_secs)
out = {
    "rows": int(rows), "rows_altered": int(changed),
    "fleetsync": {"seconds": round(fs_s, 2), "exit": int(fs_exit), "chunks": fs["chunks"],
                   "differing_rows": fs["differing_rows"], "only_in_source": len(t["only_in_source"]),
                   "only_in_target": len(t["only_in_target"]), "different": len(t["different"]),
                   "pauses": fs["pauses"]},
    "pt_table_checksum": {"seconds": round(pt_s, 2), "exit": int(pt_exit), "chunks": pt_chunks,
                          "differing_chunks": pt_chunks_diff},
    "pt_table_sync_print": {"seconds": round(float(ptsync_secs), 2), "differing_rows": len(ids)},
    "same_rows_found": fs_ids == ids,
    "speedup_vs_pt_table_checksum": round(pt_s / fs_s, 2) if fs_s > 0 else None,
}
print(json.dumps(out, indent=2))
EOF
